package dev.jloop.dist;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestExportSpec
{
    @Test
    void nameAndFileOnly()
    {
        ExportSpec spec = ExportSpec.parse("disk=/srv/disk.img");
        assertEquals("disk", spec.name());
        assertEquals(Path.of("/srv/disk.img"), spec.file());
        assertNull(spec.size());
        assertFalse(spec.readOnly());
        assertNull(spec.description());
    }

    @Test
    void everyOption()
    {
        ExportSpec spec = ExportSpec.parse("iso=boot.iso,size=2G,read-only,description=Installer");
        assertEquals("iso", spec.name());
        assertEquals(Path.of("boot.iso"), spec.file());
        assertEquals("2G", spec.size());
        assertTrue(spec.readOnly());
        assertEquals("Installer", spec.description());
        assertFalse(ExportSpec.parse("x=f,read-only=off").readOnly());
        assertTrue(ExportSpec.parse("x=f,ro").readOnly());
    }

    /** What the export does not know itself goes to the plugins that declare it, and filter= adds a filter. */
    @Test
    void pluginOptionsAndFilters()
    {
        ExportSpec spec = ExportSpec.parse("x=f,filter=cow,uring-sqpoll,cow-block-size=4K,filter=delay");
        assertEquals(List.of("cow", "delay"), spec.filters());
        assertEquals(Map.of("uring-sqpoll", "true", "cow-block-size", "4K"), spec.pluginOptions());
    }

    @Test
    void doubledCommasAreCommas()
    {
        ExportSpec spec = ExportSpec.parse("a=b,,c.img,description=one,, two,,");
        assertEquals(Path.of("b,c.img"), spec.file());
        assertEquals("one, two,", spec.description());
    }

    @Test
    void theNameEndsAtTheFirstEquals()
    {
        ExportSpec spec = ExportSpec.parse("=x=y.img");
        assertEquals("", spec.name());
        assertEquals(Path.of("x=y.img"), spec.file());
        assertTrue(ExportSpec.isSpec("a=b"));
        assertFalse(ExportSpec.isSpec("plain-name"));
    }

    @Test
    void mistakes()
    {
        assertMessage("x=", "no file after 'x='");
        assertMessage("x=,size=1G", "no file after 'x='");
        assertMessage("x=f,colour=red,colour=blue", "colour given twice");
        assertMessage("x=f,filter=", "filter needs a value");
        assertMessage("x=f,size", "size needs a value");
        assertMessage("x=f,size=big", "bad size 'big'");
        assertMessage("x=f,description=", "description needs a value");
        assertMessage("x=f,read-only=maybe", "read-only is on or off");
        assertMessage("nameonly", "expected NAME=FILE");
    }

    private static void assertMessage(String text, String expected)
    {
        UserException e = assertThrows(UserException.class, () -> ExportSpec.parse(text));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }
}
