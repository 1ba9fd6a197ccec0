package dev.jloop.ublk;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

import static java.util.Objects.requireNonNull;

/**
 * What a ublk device serves, kept in {@code /run/jloop/ublk/N} (a properties file) while device N
 * exists, so that a new server can take the device over knowing nothing but N ({@code jloop ublk
 * recover N}) and {@code jloop ublk list} can say what each device is. {@code /run} is emptied at
 * boot, as the devices are.
 *
 * <p>The device's own keys are {@code device}, {@code pid} (the process that serves it),
 * {@code queues}, {@code queue-depth}, {@code buffer-bytes}, {@code size} and {@code user-recovery}.
 * {@code origin} holds how the server was started, as jloop handed it to the frontend
 * ({@link dev.jloop.api.FrontendConfig#origin()}: {@code arguments}, {@code directory},
 * {@code backend}, {@code files}).
 */
public record UblkState(int device, long pid, int queues, int queueDepth, int bufferBytes, long size, boolean userRecovery,
        Map<String, String> origin)
{
    /** Where the state files are unless {@code JLOOP_UBLK_STATE_DIR} names another directory. */
    public static final String DEFAULT_DIRECTORY = "/run/jloop/ublk";

    private static final String DEVICE = "device";
    private static final String PID = "pid";
    private static final String QUEUES = "queues";
    private static final String QUEUE_DEPTH = "queue-depth";
    private static final String BUFFER_BYTES = "buffer-bytes";
    private static final String SIZE = "size";
    private static final String USER_RECOVERY = "user-recovery";
    private static final String ORIGIN = "origin.";

    public UblkState
    {
        origin = Map.copyOf(requireNonNull(origin, "origin is null"));
    }

    /** The directory of the state files: {@code JLOOP_UBLK_STATE_DIR}, else {@value #DEFAULT_DIRECTORY}. */
    public static Path directory()
    {
        String dir = System.getenv("JLOOP_UBLK_STATE_DIR");
        return Path.of(dir == null || dir.isEmpty() ? DEFAULT_DIRECTORY : dir);
    }

    public static Path path(Path directory, int device)
    {
        return directory.resolve(Integer.toString(device));
    }

    /** The files served, one absolute path each (from {@code origin}), or an empty string when unknown. */
    public String files()
    {
        return origin.getOrDefault("files", "");
    }

    public String backend()
    {
        return origin.getOrDefault("backend", "");
    }

    /**
     * Reads the state of device {@code device}; {@code null} when there is none. A file that cannot be
     * parsed, or that names another device, is an {@link IOException} saying so in one line.
     */
    public static UblkState read(Path directory, int device)
            throws IOException
    {
        Path path = path(directory, device);
        Properties properties = new Properties();
        try (Reader reader = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
            properties.load(reader);
        }
        catch (NoSuchFileException e) {
            return null;
        }
        catch (IllegalArgumentException e) {
            throw new IOException("state file " + path + " is malformed: " + e.getMessage());
        }
        UblkState state;
        try {
            Map<String, String> origin = new TreeMap<>();
            for (String key : properties.stringPropertyNames()) {
                if (key.startsWith(ORIGIN)) {
                    origin.put(key.substring(ORIGIN.length()), properties.getProperty(key));
                }
            }
            state = new UblkState(
                    Integer.parseInt(required(properties, DEVICE, path)),
                    Long.parseLong(required(properties, PID, path)),
                    Integer.parseInt(required(properties, QUEUES, path)),
                    Integer.parseInt(required(properties, QUEUE_DEPTH, path)),
                    Integer.parseInt(required(properties, BUFFER_BYTES, path)),
                    Long.parseLong(required(properties, SIZE, path)),
                    Boolean.parseBoolean(required(properties, USER_RECOVERY, path)),
                    origin);
        }
        catch (NumberFormatException e) {
            throw new IOException("state file " + path + " is malformed: " + e.getMessage());
        }
        if (state.device() != device) {
            throw new IOException("state file " + path + " is that of device " + state.device() + ", not " + device);
        }
        return state;
    }

    private static String required(Properties properties, String key, Path path)
            throws IOException
    {
        String value = properties.getProperty(key);
        if (value == null) {
            throw new IOException("state file " + path + " lacks '" + key + "'");
        }
        return value.trim();
    }

    /** Writes the file whole or not at all (a new file renamed over the old one). */
    public void write(Path directory)
            throws IOException
    {
        Files.createDirectories(directory);
        Properties properties = new Properties();
        properties.setProperty(DEVICE, Integer.toString(device));
        properties.setProperty(PID, Long.toString(pid));
        properties.setProperty(QUEUES, Integer.toString(queues));
        properties.setProperty(QUEUE_DEPTH, Integer.toString(queueDepth));
        properties.setProperty(BUFFER_BYTES, Integer.toString(bufferBytes));
        properties.setProperty(SIZE, Long.toString(size));
        properties.setProperty(USER_RECOVERY, Boolean.toString(userRecovery));
        origin.forEach((key, value) -> properties.setProperty(ORIGIN + key, value));
        Path path = path(directory, device);
        Path temporary = directory.resolve("." + device + ".tmp");
        try (Writer writer = Files.newBufferedWriter(temporary, StandardCharsets.UTF_8)) {
            properties.store(writer, "jloop: ublk device " + device + "; removed when the device is deleted");
        }
        Files.move(temporary, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    public static void delete(Path directory, int device)
            throws IOException
    {
        Files.deleteIfExists(path(directory, device));
    }
}
