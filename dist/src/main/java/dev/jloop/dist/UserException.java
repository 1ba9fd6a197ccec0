package dev.jloop.dist;

/** A mistake the user can fix (bad option, missing file, port in use): printed as one line, no stack trace. */
final class UserException
        extends RuntimeException
{
    UserException(String message)
    {
        super(message);
    }

    UserException(String message, Throwable cause)
    {
        super(message, cause);
    }
}
