namespace OnnxOutlierTools.Tests.Cli;

public class HelpTests
{
    [Theory]
    [InlineData(new string[0], new[] { "inspect", "convert", "--verbose" })]
    [InlineData(new[] { "inspect" }, new[] { "<MODEL>", "--json", "--verbose" })]
    [InlineData(new[] { "convert" }, new[] { "<MODEL>", "-o, --output <OUT>", "--external-data", "--threshold <BYTES>", "--embed", "--data-file <NAME>", "--verbose" })]
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
    public void Run_NoCommand_IsAUsageError()
    {
        var result = CliRunner.Run();

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.StderrLines[0]);
    }

    [Fact]
    public void Run_UnknownCommand_IsAUsageError()
    {
        var result = CliRunner.Run("frobnicate", "x.onnx");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("frobnicate", result.Stderr);
    }
}
