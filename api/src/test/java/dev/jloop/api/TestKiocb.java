package dev.jloop.api;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestKiocb
{
    @Test
    void eachInitSetsItsOwnFieldsAndClearsTheOthers()
    {
        Kiocb kiocb = new Kiocb(null);
        kiocb.initFsync(null, true);
        assertEquals(Kiocb.Op.FSYNC, kiocb.op());
        assertTrue(kiocb.datasync());
        assertEquals(0, kiocb.mode(), "the mode is the fallocate's only");

        kiocb.initFallocate(null, Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, 4096, 8192);
        assertFalse(kiocb.datasync());
        assertEquals(Fallocate.PUNCH_HOLE | Fallocate.KEEP_SIZE, kiocb.mode());
        assertEquals(4096, kiocb.pos());
        assertEquals(8192, kiocb.length());

        kiocb.initRw(Kiocb.Op.WRITE, null, null, 512, Kiocb.IOCB_DSYNC);
        assertEquals(512, kiocb.pos());
        assertEquals(Kiocb.IOCB_DSYNC, kiocb.flags());
        assertEquals(0, kiocb.mode());
        assertEquals(0, kiocb.length());
        assertFalse(kiocb.datasync());

        kiocb.initFsync(null, true);
        kiocb.reset();
        assertFalse(kiocb.datasync());
        kiocb.initFsync(null, false);
        assertFalse(kiocb.datasync());
    }
}
