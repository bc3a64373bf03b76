namespace OnnxOutlierTools.Tests.Cli;

public class HelpTests
{
    [Theory]
    [InlineData(new string[0], new[] { "inspect", "convert", "--verbose" })]
    [InlineData(new[] { "inspect" }, new[] { "<MODEL>", "--json", "--verbose" })]
    [InlineData(new[] { "convert" }, new[] { "<MODEL>", "-o, --output <OUT.onnx> (REQUIRED)", "a file, not a folder", "-f, --force", "--external-data", "--threshold <BYTES>", "--embed", "--data-file <NAME>", "--verbose" })]
    [InlineData(new[] { "import-llama2c" }, new[] { "<CHECKPOINT>", "-o, --output <DIR> (REQUIRED)", "a folder, not a file", "-f, --force", "--flavour", "--fp16", "--verbose" })]
    public void Help_EveryCommand_DescribesArgumentsAndOptions(string[] command, string[] mentions)
    {
        var result = CliRunner.Run([.. command, "--help"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Usage:", result.Stdout);
        Assert.Contains("Description:", result.Stdout);
        foreach (string m in mentions) Assert.Contains(m, result.Stdout);
        Assert.DoesNotContain("--protobuf-limit", result.Stdout);
        Assert.Equal("", result.Stderr);
    }

    [Fact]
    public void Run_NoArguments_PrintsTheHelpAndSucceeds()
    {
        var result = CliRunner.Run();

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(CliRunner.Run("--help").Stdout, result.Stdout);
        Assert.Contains("Usage:", result.Stdout);
        Assert.Contains("import-llama2c", result.Stdout);
        Assert.Equal("", result.Stderr);
    }

    [Fact]
    public void Run_OnlyAGlobalOption_IsStillAUsageError()
    {
        var result = CliRunner.Run("--verbose");

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.StderrLines[0]);
    }

    [Fact]
    public void Run_UnknownCommand_IsAUsageError()
    {
        var result = CliRunner.Run("frobnicate", "x.onnx");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal(["error: 'frobnicate' is not an onnx-outliers command (commands: inspect, convert, analyze, import-llama2c, probe, mitigate, quantize)",
            "Run 'onnx-outliers --help' for usage."], result.StderrLines);
    }

    [Theory]
    [InlineData("inspct", "'inspect'")]
    [InlineData("Inspect", "'inspect'")]
    [InlineData("cnovert", "'convert'")]
    [InlineData("import-lama2c", "'import-llama2c'")]
    [InlineData("import", "'import-llama2c'")]
    public void Run_MistypedCommand_SuggestsTheCommand(string typed, string suggestion)
    {
        var result = CliRunner.Run(typed, "model.onnx");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal([$"error: '{typed}' is not an onnx-outliers command; did you mean {suggestion}?",
            "Run 'onnx-outliers --help' for usage."], result.StderrLines);
    }

    [Theory]
    [InlineData(new[] { "inspect", "m.onnx", "--jsn" }, "--jsn", "'--json'")]
    [InlineData(new[] { "inspect", "m.onnx", "--verbos" }, "--verbos", "'--verbose'")]
    [InlineData(new[] { "convert", "m.onnx", "-o", "x.onnx", "--extrenal-data" }, "--extrenal-data", "'--external-data'")]
    [InlineData(new[] { "convert", "m.onnx", "-o", "x.onnx", "--forse" }, "--forse", "'--force'")]
    public void Run_MistypedOption_SuggestsTheOption(string[] args, string typed, string suggestion)
    {
        var result = CliRunner.Run(args);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"error: Unrecognized command or argument '{typed}'; did you mean {suggestion}?", result.StderrLines);
    }

    [Fact]
    public void Run_UnknownOptionFarFromAnyName_GetsNoSuggestion()
    {
        var result = CliRunner.Run("inspect", "m.onnx", "--zzzzzzzz");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error: Unrecognized command or argument '--zzzzzzzz'.", result.StderrLines);
        Assert.DoesNotContain("did you mean", result.Stderr);
    }

    [Fact]
    public void Run_MultiLineParserMessage_IsOneReadableLine()
    {
        var result = CliRunner.Run("import-llama2c", "c.bin", "-o", "out", "--flavour", "bogus");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal(["error: Argument 'bogus' not recognized. Must be one of: 'decomposed', 'decomposed-past', 'genai-gqa'",
            "Run 'onnx-outliers import-llama2c --help' for usage."], result.StderrLines);
        Assert.DoesNotContain(@"\n", result.Stderr);
        Assert.DoesNotContain(@"\t", result.Stderr);
    }
}
