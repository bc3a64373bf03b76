namespace OnnxOutlierTools.Tests.Cli;

/// <summary><c>convert --data-file</c> where it cannot have an effect is not silently ignored.</summary>
public class DataFileOptionTests
{
    private static readonly string EmbeddedModel = Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx");

    [Fact]
    public void Convert_DataFileWithEmbed_IsAUsageErrorAndWritesNothing()
    {
        using var temp = new TempFolder("data-file");

        var result = CliRunner.Run("convert", EmbeddedModel, "-o", temp.Path("out.onnx"), "--embed", "--data-file", "weights.bin");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal("error: --data-file names the external data file, and --embed writes none; drop one of them.", result.StderrLines[0]);
        Assert.Empty(temp.Files());
    }

    [Theory]
    [InlineData(new string[0], "(the model has none; add --external-data to move tensors there)")]
    [InlineData(new[] { "--external-data", "--threshold", "1000000000" }, "(none has --threshold 1,000,000,000 bytes or more)")]
    public void Convert_DataFileWhenNothingGoesExternal_Warns(string[] layout, string why)
    {
        using var temp = new TempFolder("data-file");

        var result = CliRunner.Run(["convert", EmbeddedModel, "-o", temp.Path("out.onnx"), "--data-file", "weights.bin", .. layout]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal([$"warning: --data-file 'weights.bin' had no effect: no tensor was stored in external data {why}"], result.StderrLines);
        Assert.Equal(["out.onnx"], temp.Files());
    }

    [Fact]
    public void ConvertJson_DataFileWithoutEffect_IsAWarningInTheJson()
    {
        using var temp = new TempFolder("data-file");

        var result = CliRunner.Run("convert", EmbeddedModel, "-o", temp.Path("out.onnx"), "--data-file", "weights.bin", "--json");

        Assert.True(result.ExitCode == 0, result.ToString());
        var warnings = System.Text.Json.JsonDocument.Parse(result.Stdout).RootElement.GetProperty("warnings");
        Assert.StartsWith("--data-file 'weights.bin' had no effect", Assert.Single(warnings.EnumerateArray()).GetString());
    }

    [Fact]
    public void Convert_DataFileUsed_GivesNoWarning()
    {
        using var temp = new TempFolder("data-file");

        var result = CliRunner.Run("convert", EmbeddedModel, "-o", temp.Path("out.onnx"), "--external-data", "--data-file", "weights.bin");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Stderr);
        Assert.Equal(["out.onnx", "weights.bin"], temp.Files());
    }
}
