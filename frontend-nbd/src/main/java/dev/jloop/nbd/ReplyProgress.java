package dev.jloop.nbd;

/** What the server's reply watchdog sees of a connection's reply sending; read from the timer thread. */
interface ReplyProgress
{
    /** Socket writes so far; the watchdog compares it between its rounds. */
    long progress();

    /** Whether replies are being written or wait to be; false once sending has failed. */
    boolean busy();
}
