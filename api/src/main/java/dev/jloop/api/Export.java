package dev.jloop.api;

import static java.util.Objects.requireNonNull;

/** A block device offered by a frontend under a name (an NBD export name). Immutable. */
public final class Export
{
    private final String name;
    private final String description;
    private final BlockDevice device;

    public Export(String name, String description, BlockDevice device)
    {
        this.name = requireNonNull(name, "name is null");
        this.description = requireNonNull(description, "description is null");
        this.device = requireNonNull(device, "device is null");
    }

    public String name()
    {
        return name;
    }

    public String description()
    {
        return description;
    }

    public BlockDevice device()
    {
        return device;
    }
}
