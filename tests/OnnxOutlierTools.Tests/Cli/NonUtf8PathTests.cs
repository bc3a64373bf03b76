using System.Diagnostics;
using OnnxOutlierTools.Cli;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary>File names that are not UTF-8 (Latin-1 <c>caf\xe9.onnx</c>) reach .NET as U+FFFD. The built CLI
/// runs as a child of <c>/bin/sh</c>, which makes the names with printf, so the bytes are real.</summary>
public class NonUtf8PathTests
{
    [SkippableFact]
    public void Inspect_NonUtf8Name_SaysSoInsteadOfNotFound()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "raw arguments come from /proc/self/cmdline");
        using var temp = new TempFolder("non-utf8");
        temp.CopyFixture("gpt2-torch-past", "gpt2_past.onnx", "model.onnx");

        var result = Shell(temp, """cp model.onnx "$(printf 'caf\351.onnx')" && exec "$CLI" inspect "$(printf 'caf\351.onnx')" """);

        Assert.Equal(2, result.ExitCode);
        Assert.Equal([@"error: 'caf\xe9.onnx': not valid UTF-8 (bytes shown as \xNN); onnx-outliers can only open and create files with UTF-8 names, so rename the file"],
            result.StderrLines);
        Assert.Equal("", result.Stdout);
    }

    [SkippableFact]
    public void Convert_NonUtf8OutputName_IsRefusedNotRenamed()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "raw arguments come from /proc/self/cmdline");
        using var temp = new TempFolder("non-utf8");
        temp.CopyFixture("gpt2-torch-past", "gpt2_past.onnx", "model.onnx");

        var result = Shell(temp, """exec "$CLI" convert model.onnx -o "$(printf 'out\377.onnx')" """);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(@"'out\xff.onnx': not valid UTF-8", Assert.Single(result.StderrLines));
        Assert.Equal(["model.onnx"], temp.Files()); // no "out\uFFFD.onnx" (bytes EF BF BD) written instead
    }

    [SkippableFact]
    public void Inspect_Utf8NameOutsideAscii_StillWorks()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "raw arguments come from /proc/self/cmdline");
        using var temp = new TempFolder("non-utf8");
        temp.CopyFixture("gpt2-torch-past", "gpt2_past.onnx", "café.onnx");

        var result = Shell(temp, """exec "$CLI" inspect "$(printf 'caf\303\251.onnx')" """);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith("model:     café.onnx (", result.Stdout);
    }

    [Fact]
    public void Check_ArgumentsThatDoNotLineUp_RefuseNothing()
    {
        byte[][] raw = [[0x64, 0x6f, 0x74, 0x6e, 0x65, 0x74], [0x61, 0xe9]];
        Assert.NotNull(ArgumentEncoding.Check(["a\uFFFD"], raw));
        Assert.Null(ArgumentEncoding.Check(["other"], raw));
        Assert.Null(ArgumentEncoding.Check(["a\uFFFD"], null));
        Assert.Null(ArgumentEncoding.Check(["x", "y", "z"], raw));
    }

    [Theory]
    [InlineData(new byte[] { 0x61, 0xe9, 0x2e }, @"a\xe9.")]
    [InlineData(new byte[] { 0xc3, 0xa9, 0xff }, @"é\xff")]
    [InlineData(new byte[] { 0xe2, 0x82 }, @"\xe2\x82")]
    [InlineData(new byte[] { 0x0a, 0xfe }, @"\n\xfe")]
    public void Describe_InvalidBytes_AreShownAsHex(byte[] bytes, string expected) =>
        Assert.Equal(expected, ArgumentEncoding.Describe(bytes));

    /// <summary>Runs <paramref name="script"/> with <c>/bin/sh -c</c> in the folder, $CLI being the built
    /// onnx-outliers (its apphost, else <c>dotnet onnx-outliers.dll</c>).</summary>
    private static CliResult Shell(TempFolder temp, string script)
    {
        string apphost = Path.Combine(AppContext.BaseDirectory, "onnx-outliers");
        string dll = Path.Combine(AppContext.BaseDirectory, "onnx-outliers.dll");
        var start = new ProcessStartInfo("/bin/sh")
        {
            WorkingDirectory = temp.FullPath,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(File.Exists(apphost) ? script
            : script.Replace("\"$CLI\"", "\"$DOTNET\" \"$CLI\"", StringComparison.Ordinal));
        start.Environment["CLI"] = File.Exists(apphost) ? apphost : dll;
        start.Environment["DOTNET"] = Environment.ProcessPath ?? "dotnet";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "the CLI did not finish in 60 s");
        return new CliResult(process.ExitCode, stdout, stderr.Result);
    }
}
