namespace OnnxOutlierTools.Tests.Cli;

/// <summary><c>import-llama2c</c> as a user types it.</summary>
public class ImportLlama2cCommandTests
{
    [Theory]
    [InlineData("decomposed")]
    [InlineData("decomposed-past")]
    [InlineData("genai-gqa")]
    public void Import_Stories260K_WritesAFolderThatInspectRecognizes(string flavour)
    {
        using var temp = new TempFolder("import-cli");
        var r = CliRunner.Run("import-llama2c", Fixtures.Path("llama2c", "stories260K.bin"), "-o", temp.FullPath, "--flavour", flavour);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(["config.json", "model.onnx", "model.onnx.data"], temp.Files());
        var inspect = CliRunner.Run("inspect", temp.Path("model.onnx"), "--layers");
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        Assert.Contains("Structure: 5 pre-norm decoder block(s)", inspect.Stdout);
        Assert.Contains("hint: bos_token_id 1 (from config.json)", inspect.Stdout);
    }

    [Fact]
    public void Import_TruncatedCheckpoint_IsOneLineErrorAndWritesNothing()
    {
        using var temp = new TempFolder("import-cli-bad");
        string bad = temp.Path("bad.bin");
        File.WriteAllBytes(bad, File.ReadAllBytes(Fixtures.Path("llama2c", "stories260K.bin"))[..5000]);
        var r = CliRunner.Run("import-llama2c", bad, "-o", temp.Path("out"));
        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.StderrLines);
        Assert.Contains(bad, r.Stderr);
        Assert.False(Directory.Exists(temp.Path("out")) && Directory.EnumerateFileSystemEntries(temp.Path("out")).Any());
    }

    [Fact]
    public void Import_UnknownFlavour_IsAUsageError()
    {
        var r = CliRunner.Run("import-llama2c", Fixtures.Path("llama2c", "stories260K.bin"), "-o", "/tmp/never-written", "--flavour", "bogus");
        Assert.Equal(2, r.ExitCode);
        Assert.False(Directory.Exists("/tmp/never-written"));
    }
}
