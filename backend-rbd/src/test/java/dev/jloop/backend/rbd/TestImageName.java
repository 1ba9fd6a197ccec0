package dev.jloop.backend.rbd;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class TestImageName
{
    @Test
    public void namesAsRbdAndQemuWriteThem()
    {
        assertEquals(new ImageName("rbd", "", "vm1", null), ImageName.parse("rbd/vm1"));
        assertEquals(new ImageName("rbd", "", "vm1", "monday"), ImageName.parse("rbd/vm1@monday"));
        assertEquals(new ImageName("rbd", "", "vm1", null), ImageName.parse("rbd:rbd/vm1"));
        assertEquals(new ImageName("pool", "tenant", "disk", "s1"), ImageName.parse("pool/tenant/disk@s1"));
        assertEquals("pool/tenant/disk@s1", ImageName.parse("rbd:pool/tenant/disk@s1").toString());
    }

    @Test
    public void malformedNamesSayWhatIsExpected()
    {
        for (String bad : new String[] {"vm1", "rbd/", "/vm1", "a/b/c/d", "rbd/vm1@", "rbd//vm1", "/srv/disk.img", "rbd/vm1@a/b"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ImageName.parse(bad), bad);
            assertTrue(e.getMessage().contains("'" + bad + "'") && e.getMessage().contains("POOL/IMAGE[@SNAP]"), e.getMessage());
        }
    }

    @Test
    public void settingsAreKeyValuePairs()
    {
        assertEquals(Map.of("mon_host", "10.0.0.1:6789", "rbd_cache", "false"), Rados.parseSettings("mon_host=10.0.0.1:6789; rbd_cache=false;"));
        assertEquals(Map.of(), Rados.parseSettings(null));
        assertThrows(IllegalArgumentException.class, () -> Rados.parseSettings("rbd_cache"));
        assertThrows(IllegalArgumentException.class, () -> Rados.parseSettings("=x"));
    }
}
