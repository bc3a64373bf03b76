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
        string[] expected = flavour == "genai-gqa"
            ? ["config.json", "genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json"] // what onnxruntime-genai needs
            : ["config.json", "model.onnx", "model.onnx.data"];
        Assert.Equal(expected, temp.Files());
        var inspect = CliRunner.Run("inspect", temp.Path("model.onnx"), "--layers");
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        Assert.Contains("Structure: 5 pre-norm decoder block(s)", inspect.Stdout);
        Assert.Contains("hint: bos_token_id 1 (from ", inspect.Stdout);
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
    public void Import_ExistingFolder_IsRefusedWithoutForceAndReplacedWithIt()
    {
        using var temp = new TempFolder("import-cli-force");
        string checkpoint = Fixtures.Path("llama2c", "stories260K.bin");
        Assert.Equal(0, CliRunner.Run("import-llama2c", checkpoint, "-o", temp.FullPath).ExitCode);
        var before = Hashes(temp);

        var refused = CliRunner.Run("import-llama2c", checkpoint, "-o", temp.FullPath, "--fp16");
        Assert.Equal(2, refused.ExitCode);
        Assert.Equal([$"error: {temp.Path("model.onnx")}: already exists; add --force to replace it"], refused.StderrLines);
        Assert.Equal(before, Hashes(temp));

        var forced = CliRunner.Run("import-llama2c", checkpoint, "-o", temp.FullPath, "--fp16", "--force");
        Assert.True(forced.ExitCode == 0, forced.ToString());
        Assert.Equal(["config.json", "model.onnx", "model.onnx.data"], temp.Files()); // no temporaries left behind
        var after = Hashes(temp);
        Assert.All(before.Keys, name => Assert.NotEqual(before[name], after[name]));
        Assert.Contains("\"torch_dtype\": \"float16\"", File.ReadAllText(temp.Path("config.json")));
    }

    [Fact]
    public void Import_ExistingConfigOnly_IsRefusedBeforeAnythingIsWritten()
    {
        using var temp = new TempFolder("import-cli-config");
        File.WriteAllText(temp.Path("config.json"), "my own config");

        var refused = CliRunner.Run("import-llama2c", Fixtures.Path("llama2c", "stories260K.bin"), "-o", temp.FullPath);

        Assert.Equal(2, refused.ExitCode);
        Assert.Equal([$"error: {temp.Path("config.json")}: already exists; add --force to replace it"], refused.StderrLines);
        Assert.Equal(["config.json"], temp.Files());
        Assert.Equal("my own config", File.ReadAllText(temp.Path("config.json")));
    }

    [Fact]
    public void Import_OutputIsAFile_SaysTheOutputIsAFolder()
    {
        using var temp = new TempFolder("import-cli-file");
        string file = temp.Path("model.onnx");
        File.WriteAllText(file, "not a folder");

        var r = CliRunner.Run("import-llama2c", Fixtures.Path("llama2c", "stories260K.bin"), "-o", file, "--force");

        Assert.Equal(2, r.ExitCode);
        Assert.Equal([$"error: {file}: is a file; the output is a folder (for model.onnx, model.onnx.data, config.json)"], r.StderrLines);
        Assert.Equal("not a folder", File.ReadAllText(file));
    }

    private static Dictionary<string, string> Hashes(TempFolder temp) =>
        temp.Files().ToDictionary(f => f, f => TempFolder.Sha256(temp.Path(f)));

    [Fact]
    public void Import_UnknownFlavour_IsAUsageError()
    {
        var r = CliRunner.Run("import-llama2c", Fixtures.Path("llama2c", "stories260K.bin"), "-o", "/tmp/never-written", "--flavour", "bogus");
        Assert.Equal(2, r.ExitCode);
        Assert.False(Directory.Exists("/tmp/never-written"));
    }
}
