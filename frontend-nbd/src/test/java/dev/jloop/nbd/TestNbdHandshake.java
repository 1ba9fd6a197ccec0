package dev.jloop.nbd;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.jloop.nbd.NbdProtocol.CMD_READ;
import static dev.jloop.nbd.NbdProtocol.FLAG_CAN_MULTI_CONN;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_C_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_FIXED_NEWSTYLE;
import static dev.jloop.nbd.NbdProtocol.FLAG_HAS_FLAGS;
import static dev.jloop.nbd.NbdProtocol.FLAG_NO_ZEROES;
import static dev.jloop.nbd.NbdProtocol.FLAG_READ_ONLY;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FLUSH;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_FUA;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.jloop.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.jloop.nbd.NbdProtocol.INFO_BLOCK_SIZE;
import static dev.jloop.nbd.NbdProtocol.INFO_DESCRIPTION;
import static dev.jloop.nbd.NbdProtocol.INFO_EXPORT;
import static dev.jloop.nbd.NbdProtocol.INFO_NAME;
import static dev.jloop.nbd.NbdProtocol.OPT_ABORT;
import static dev.jloop.nbd.NbdProtocol.OPT_EXPORT_NAME;
import static dev.jloop.nbd.NbdProtocol.OPT_GO;
import static dev.jloop.nbd.NbdProtocol.OPT_INFO;
import static dev.jloop.nbd.NbdProtocol.OPT_LIST;
import static dev.jloop.nbd.NbdProtocol.OPT_STARTTLS;
import static dev.jloop.nbd.NbdProtocol.OPT_STRUCTURED_REPLY;
import static dev.jloop.nbd.NbdProtocol.REP_ACK;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_INVALID;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_TOO_BIG;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_UNKNOWN;
import static dev.jloop.nbd.NbdProtocol.REP_ERR_UNSUP;
import static dev.jloop.nbd.NbdProtocol.REP_INFO;
import static dev.jloop.nbd.NbdProtocol.REP_SERVER;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestNbdHandshake
        extends AbstractNbdServerTest
{
    private static final int ALL_FLAGS = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES | FLAG_CAN_MULTI_CONN | NbdProtocol.FLAG_SEND_FAST_ZERO | NbdProtocol.FLAG_SEND_CACHE;

    @BeforeEach
    void start()
            throws IOException
    {
        startServer(Map.of());
    }

    private NbdTestClient negotiating(int clientFlags)
            throws IOException
    {
        NbdTestClient client = new NbdTestClient(address());
        assertEquals(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, client.readGreeting());
        client.sendClientFlags(clientFlags);
        return client;
    }

    private NbdTestClient negotiating()
            throws IOException
    {
        return negotiating(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    }

    /** Reads replies to one INFO or GO up to its ACK (or error), returning all of them. */
    private static List<NbdTestClient.OptionReply> repliesUpToAck(NbdTestClient client)
            throws IOException
    {
        List<NbdTestClient.OptionReply> replies = new ArrayList<>();
        while (true) {
            NbdTestClient.OptionReply reply = client.readOptionReply();
            replies.add(reply);
            if (reply.type() != REP_INFO && reply.type() != REP_SERVER) {
                return replies;
            }
        }
    }

    private static void assertServes(NbdTestClient client, MemoryBlockDevice device)
            throws IOException
    {
        device.write(100, "hello".getBytes(StandardCharsets.US_ASCII));
        assertArrayEquals("hello".getBytes(StandardCharsets.US_ASCII), client.read(100, 5));
    }

    @Test
    void goWithoutInformationRequestsSendsExportInfoThenAck()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            List<NbdTestClient.OptionReply> replies = repliesUpToAck(client);
            assertEquals(2, replies.size());
            ByteBuffer info = replies.get(0).buffer();
            assertEquals(OPT_GO, replies.get(0).option());
            assertEquals(REP_INFO, replies.get(0).type());
            assertEquals(12, info.remaining());
            assertEquals(INFO_EXPORT, info.getShort());
            assertEquals(DISK_SIZE, info.getLong());
            assertEquals(ALL_FLAGS, info.getShort());
            assertEquals(REP_ACK, replies.get(1).type());
            assertEquals(0, replies.get(1).data().length);
            assertServes(client, disk);
        }
    }

    @Test
    void goWithInformationRequestsAnswersEachKnownOne()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("ro", INFO_NAME, INFO_DESCRIPTION, 999, INFO_BLOCK_SIZE));
            List<NbdTestClient.OptionReply> replies = repliesUpToAck(client);
            assertEquals(5, replies.size(), "EXPORT, NAME, DESCRIPTION, BLOCK_SIZE, ACK; unknown 999 ignored");
            ByteBuffer export = replies.get(0).buffer();
            assertEquals(INFO_EXPORT, export.getShort());
            assertEquals(1 << 20, export.getLong());
            assertEquals(FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH, export.getShort());

            ByteBuffer name = replies.get(1).buffer();
            assertEquals(INFO_NAME, name.getShort());
            assertEquals("ro", StandardCharsets.UTF_8.decode(name).toString());
            ByteBuffer description = replies.get(2).buffer();
            assertEquals(INFO_DESCRIPTION, description.getShort());
            assertEquals("a read-only disk", StandardCharsets.UTF_8.decode(description).toString());
            ByteBuffer blockSize = replies.get(3).buffer();
            assertEquals(14, blockSize.remaining());
            assertEquals(INFO_BLOCK_SIZE, blockSize.getShort());
            assertEquals(1, blockSize.getInt(), "minimum: the device bounces unaligned requests itself");
            assertEquals(4096, blockSize.getInt());
            assertEquals(32 << 20, blockSize.getInt());
            assertEquals(REP_ACK, replies.get(4).type());
            assertServes(client, readOnlyDisk);
        }
    }

    @Test
    void infoKeepsNegotiatingAndGoFollows()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_INFO, NbdTestClient.infoRequest("disk", INFO_BLOCK_SIZE));
            List<NbdTestClient.OptionReply> replies = repliesUpToAck(client);
            assertEquals(3, replies.size());
            assertEquals(OPT_INFO, replies.get(2).option());
            assertEquals(REP_ACK, replies.get(2).type());
            ByteBuffer blockSize = replies.get(1).buffer();
            assertEquals(INFO_BLOCK_SIZE, blockSize.getShort());
            assertEquals(1, blockSize.getInt());

            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            assertEquals(REP_ACK, repliesUpToAck(client).get(1).type());
            assertServes(client, disk);
        }
    }

    @Test
    void emptyNameIsTheFirstExport()
            throws IOException
    {
        try (NbdTestClient client = NbdTestClient.open(address(), "")) {
            assertEquals(DISK_SIZE, client.exportSize);
            assertServes(client, disk);
        }
    }

    @Test
    void exportNameWithNoZeroes()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            ByteBuffer reply = ByteBuffer.wrap(client.readData(10));
            assertEquals(DISK_SIZE, reply.getLong());
            assertEquals(ALL_FLAGS, reply.getShort());
            // the next bytes must be the reply to this READ, not padding
            assertServes(client, disk);
        }
    }

    @Test
    void exportNameWithoutNoZeroesPads124Zeroes()
            throws IOException
    {
        try (NbdTestClient client = negotiating(FLAG_C_FIXED_NEWSTYLE)) {
            client.sendOption(OPT_EXPORT_NAME, "ro".getBytes(StandardCharsets.UTF_8));
            ByteBuffer reply = ByteBuffer.wrap(client.readData(10 + 124));
            assertEquals(1 << 20, reply.getLong());
            assertEquals(FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH, reply.getShort());
            while (reply.hasRemaining()) {
                assertEquals(0, reply.get());
            }
            assertServes(client, readOnlyDisk);
        }
    }

    @Test
    void exportNameOfUnknownExportClosesTheConnection()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_EXPORT_NAME, "nope".getBytes(StandardCharsets.UTF_8));
            assertTrue(client.isClosedByServer());
        }
    }

    @Test
    void listSendsOneServerReplyPerExport()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_LIST, new byte[0]);
            List<NbdTestClient.OptionReply> replies = repliesUpToAck(client);
            assertEquals(3, replies.size());
            List<String> names = new ArrayList<>();
            for (NbdTestClient.OptionReply reply : replies.subList(0, 2)) {
                assertEquals(REP_SERVER, reply.type());
                ByteBuffer data = reply.buffer();
                byte[] name = new byte[data.getInt()];
                data.get(name);
                names.add(new String(name, StandardCharsets.UTF_8));
            }
            assertEquals(List.of("disk", "ro"), names);
            assertEquals(REP_ACK, replies.get(2).type());

            client.sendOption(OPT_LIST, new byte[] {1});
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            assertEquals(REP_ACK, repliesUpToAck(client).get(1).type());
        }
    }

    @Test
    void abortIsAcknowledgedAndEndsTheConnection()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_ABORT, new byte[0]);
            NbdTestClient.OptionReply reply = client.readOptionReply();
            assertEquals(OPT_ABORT, reply.option());
            assertEquals(REP_ACK, reply.type());
            assertTrue(client.isClosedByServer());
        }
    }

    @Test
    void unsupportedOptionsAreRefusedAndNegotiationGoesOn()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            for (int option : new int[] {99, OPT_STARTTLS, 4, 11}) {
                client.sendOption(option, new byte[3]);
                NbdTestClient.OptionReply reply = client.readOptionReply();
                assertEquals(option, reply.option());
                assertEquals(REP_ERR_UNSUP, reply.type());
            }
            // known, but it takes no data
            client.sendOption(OPT_STRUCTURED_REPLY, new byte[3]);
            assertEquals(NbdProtocol.REP_ERR_INVALID, client.readOptionReply().type());
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            assertEquals(REP_ACK, repliesUpToAck(client).get(1).type());
            assertServes(client, disk);
        }
    }

    @Test
    void unknownExportIsRefusedAndNegotiationGoesOn()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendOption(OPT_INFO, NbdTestClient.infoRequest("nope"));
            assertEquals(REP_ERR_UNKNOWN, client.readOptionReply().type());
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("nope", INFO_NAME));
            assertEquals(REP_ERR_UNKNOWN, client.readOptionReply().type());
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            assertEquals(REP_ACK, repliesUpToAck(client).get(1).type());
            assertServes(client, disk);
        }
    }

    @Test
    void malformedInfoRequestsAreInvalid()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            // name length runs past the data
            client.sendOption(OPT_GO, ByteBuffer.allocate(8).putInt(100).putShort((short) 0).array());
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            // two information requests announced, one sent
            client.sendOption(OPT_GO, ByteBuffer.allocate(4 + 4 + 2 + 2).putInt(4).put("disk".getBytes(StandardCharsets.UTF_8)).putShort((short) 2).putShort((short) 1).array());
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            // too short to hold anything
            client.sendOption(OPT_INFO, new byte[2]);
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            // not UTF-8
            client.sendOption(OPT_INFO, ByteBuffer.allocate(4 + 2 + 2).putInt(2).put((byte) 0xc3).put((byte) 0x28).putShort((short) 0).array());
            assertEquals(REP_ERR_INVALID, client.readOptionReply().type());
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            assertEquals(REP_ACK, repliesUpToAck(client).get(1).type());
        }
    }

    @Test
    void oversizedOptionIsDiscardedAndRefused()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            int length = (1 << 20) + 7;
            client.sendOptionHeader(OPT_GO, length);
            client.sendRaw(new byte[length]);
            NbdTestClient.OptionReply reply = client.readOptionReply();
            assertEquals(OPT_GO, reply.option());
            assertEquals(REP_ERR_TOO_BIG, reply.type());
            client.sendOption(OPT_GO, NbdTestClient.infoRequest("disk"));
            assertEquals(REP_ACK, repliesUpToAck(client).get(1).type());
            assertServes(client, disk);
        }
    }

    @Test
    void unknownClientFlagsCloseTheConnection()
            throws IOException
    {
        try (NbdTestClient client = negotiating(FLAG_C_FIXED_NEWSTYLE | 1 << 5)) {
            assertTrue(client.isClosedByServer());
        }
    }

    @Test
    void badOptionMagicClosesTheConnection()
            throws IOException
    {
        try (NbdTestClient client = negotiating()) {
            client.sendRaw(new byte[16]);
            assertTrue(client.isClosedByServer());
        }
    }

    @Test
    void clientWithoutFixedNewstyleGetsNoOptionReplies()
            throws IOException
    {
        try (NbdTestClient client = negotiating(0)) {
            client.sendOption(OPT_LIST, new byte[0]);
            assertTrue(client.isClosedByServer());
        }
        try (NbdTestClient client = negotiating(0)) {
            client.sendOption(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            client.readData(10 + 124);
            client.sendRequest(0, CMD_READ, 1, 0, 1);
            assertEquals(0, client.readReply().error());
        }
    }
}
