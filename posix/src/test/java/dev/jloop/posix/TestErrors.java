package dev.jloop.posix;

import dev.jloop.api.Errno;
import org.junit.jupiter.api.Test;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestErrors
{
    /** The SPI's hand-written errno values are the platform's, and both name them alike. */
    @Test
    public void testSpiErrnoMatchesThePlatform()
            throws IllegalAccessException
    {
        int checked = 0;
        for (Field field : Errno.class.getFields()) {
            if (field.getType() != int.class || !Modifier.isStatic(field.getModifiers())) {
                continue;
            }
            int value = field.getInt(null);
            assertEquals(jnr.constants.platform.Errno.valueOf(field.getName()).intValue(), value, field.getName());
            assertEquals(Errors.name(value), Errno.name(value), field.getName());
            assertEquals(Errors.name(-value), Errno.name(-value), field.getName());
            checked++;
        }
        assertTrue(checked > 15, "constants checked: " + checked);
        assertEquals("EOPNOTSUPP", Errno.name(Errno.ENOTSUP));
        assertEquals("errno 999", Errno.name(-999));
    }

    @Test
    public void testNames()
    {
        assertEquals("ENOENT", Errors.name(-Errors.ENOENT));
        assertEquals("ENXIO", Errors.name(Errors.ENXIO));
        assertEquals("ENOTTY", Errors.name(-25));
        assertEquals("EOPNOTSUPP", Errors.name(-Errors.EOPNOTSUPP));
        assertEquals("errno 999", Errors.name(-999));
        assertEquals("Bad file descriptor (EBADF)", Errors.describe(-Errors.EBADF));
    }

    @Test
    public void testNativeIoExceptionCarriesSyscallErrnoAndText()
            throws NativeIoException
    {
        NativeIoException e = Errors.newIOException("io_uring_setup", -Errors.EPERM);
        assertEquals("io_uring_setup failed: Operation not permitted (EPERM)", e.getMessage());
        assertEquals("io_uring_setup", e.syscall());
        assertEquals(Errors.EPERM, e.errno());

        NativeIoException hinted = new NativeIoException("open /dev/ublk-control", -Errors.EACCES, "ublk needs root");
        assertEquals("open /dev/ublk-control failed: Permission denied (EACCES); ublk needs root", hinted.getMessage());

        assertEquals(3, Errors.check("read", 3));
        assertEquals(Errors.EBADF, assertThrows(NativeIoException.class, () -> Errors.check("close", -Errors.EBADF)).errno());
        assertThrows(IllegalArgumentException.class, () -> Errors.newIOException("close", 0));
        assertThrows(IllegalArgumentException.class, () -> Errors.newIOException("open", "/x", 1));
    }
}
