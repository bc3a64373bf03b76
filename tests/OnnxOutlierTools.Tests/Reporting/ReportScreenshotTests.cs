using System.Buffers.Binary;
using System.Diagnostics;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Reporting.Html;

namespace OnnxOutlierTools.Tests.Reporting;

/// <summary>Renders report.html in headless Chromium through tools/report-screenshot.sh (skipped where chromium is not
/// installed). Set REPORT_SCREENSHOT_DIR to keep the page and the PNG for looking at them.</summary>
public class ReportScreenshotTests
{
    [SkippableFact]
    public void Screenshot_DecoderReport_IsANonTrivialPicture()
    {
        Skip.If(FindOnPath("chromium") is null, "chromium is not installed (apt-get install -y chromium)");
        var statistics = DecoderLikeStatistics.Build();
        var analysis = OutlierAnalyzer.Analyze(statistics, structure: null);
        using var temp = new TempFolder("screenshot");
        string keep = Environment.GetEnvironmentVariable("REPORT_SCREENSHOT_DIR") is { Length: > 0 } dir ? Directory.CreateDirectory(dir).FullName : temp.FullPath;
        string html = Path.Combine(keep, "report.html"), png = Path.Combine(keep, "report.png");
        HtmlReport.Write(html, statistics, analysis, ReportSamples.Run, overwrite: true);

        var (code, output) = Run("bash", Path.Combine(RepoRoot(), "tools", "report-screenshot.sh"), html, png, "1280,2400");

        Assert.True(code == 0, output);
        byte[] bytes = File.ReadAllBytes(png);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        Assert.Equal(1280, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
        Assert.Equal(2400, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
        // A blank or error page compresses to a few KB; plots, text and a heat map do not.
        Assert.True(bytes.Length > 60_000, $"screenshot is only {bytes.Length} bytes");
    }

    [Fact]
    public void Script_MissingReport_OneLineAndExitCode2()
    {
        var (code, output) = Run("bash", Path.Combine(RepoRoot(), "tools", "report-screenshot.sh"), "/nonexistent/report.html", "/tmp/x.png");
        Assert.Equal(2, code);
        Assert.Equal("error: /nonexistent/report.html: no such file", output.Trim());
    }

    internal static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) return dir.FullName;
        throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    internal static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(120_000)) { process.Kill(entireProcessTree: true); return (-1, "timed out"); }
        return (process.ExitCode, stdout.Result + stderr);
    }
}
