using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Tests.Import;

public class AtomicTextFileTests
{
    [Fact]
    public void Write_ExistingFileWithoutOverwrite_IsRefusedAndKept()
    {
        using var temp = new TempFolder("atomic-text");
        string path = temp.Path("config.json");
        File.WriteAllText(path, "old");

        var ex = Assert.Throws<OutputExistsException>(() => AtomicTextFile.Write(path, "new", overwrite: false));

        Assert.Equal($"{path}: already exists", ex.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(["config.json"], temp.Files());
    }

    [SkippableFact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // Unix permissions; skipped there
    public void Write_Overwrite_ReplacesTheFileKeepsItsPermissionsAndLeavesNoTemporary()
    {
        Skip.If(OperatingSystem.IsWindows(), "Unix permissions");
        using var temp = new TempFolder("atomic-text");
        string path = temp.Path("config.json");
        File.WriteAllText(path, "old");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        AtomicTextFile.Write(path, "{\"a\": 1}", overwrite: true);

        Assert.Equal("{\"a\": 1}", File.ReadAllText(path));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal(["config.json"], temp.Files());
    }

    [Fact]
    public void Write_MissingFolder_IsOneLineSaveError()
    {
        using var temp = new TempFolder("atomic-text");
        string path = temp.Path("absent", "config.json");

        var ex = Assert.Throws<ModelSaveException>(() => AtomicTextFile.Write(path, "x", overwrite: true));

        Assert.StartsWith($"{path}: cannot write: ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }
}
