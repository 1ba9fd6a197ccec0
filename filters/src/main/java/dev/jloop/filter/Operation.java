package dev.jloop.filter;

import dev.jloop.api.Fallocate;
import dev.jloop.api.Kiocb;

import java.util.Arrays;
import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;

/** What a request does, named as nbdkit's filters name it in their options. */
enum Operation
{
    READ, WRITE, FLUSH, TRIM, ZERO;

    static Operation of(Kiocb kiocb)
    {
        switch (kiocb.op()) {
            case READ:
                return READ;
            case WRITE:
                return WRITE;
            case FSYNC:
                return FLUSH;
            case FALLOCATE:
            default:
                return (kiocb.mode() & Fallocate.PUNCH_HOLE) != 0 ? TRIM : ZERO;
        }
    }

    String key()
    {
        return name().toLowerCase(Locale.ROOT);
    }

    /** {@code read,write} and the like; {@code all} for every one. */
    static Set<Operation> parseList(String option, String text)
    {
        if (text.trim().equals("all")) {
            return EnumSet.allOf(Operation.class);
        }
        Set<Operation> operations = EnumSet.noneOf(Operation.class);
        for (String part : text.split("[,+ ]+")) {
            try {
                operations.add(valueOf(part.trim().toUpperCase(Locale.ROOT)));
            }
            catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--" + option + ": '" + part + "' is not one of all, "
                        + String.join(", ", Arrays.stream(values()).map(Operation::key).toList()));
            }
        }
        return operations;
    }
}
