using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Packaging;

/// <summary>The README's Install section works as written: its marked one-line commands (install, run,
/// uninstall) run in a temporary clone of the repository with a private DOTNET_CLI_HOME, so the user's
/// global tools are never touched. Packing and installing takes minutes, so that test runs only with
/// ONNX_OUTLIERS_INSTALL_TEST=1 (<c>.ci/run</c> runs it as its own step) and reports itself as skipped
/// otherwise. It clones the committed HEAD: uncommitted changes are not what it tests.</summary>
public sealed class ReadmeInstallTests(ITestOutputHelper output)
{
    public const string EnabledVariable = "ONNX_OUTLIERS_INSTALL_TEST";
    private static readonly string[] Names = ["demo", "install", "run", "uninstall"];

    [Fact]
    public void Readme_MarksOneLineInstallRunAndUninstallCommands()
    {
        var commands = MarkedCommands(File.ReadAllText(Path.Combine(RepoRoot, "README.md")));
        Assert.Equal(Names.Order(StringComparer.Ordinal), commands.Keys.Order(StringComparer.Ordinal));
        Assert.StartsWith("dotnet pack src/OnnxOutlierTools.Cli ", commands["install"]);
        Assert.Contains("dotnet tool install --global ", commands["install"]);
        Assert.StartsWith("onnx-outliers ", commands["run"]);
        Assert.Equal("dotnet tool uninstall --global OnnxOutlierTools.Cli", commands["uninstall"]);
    }

    [Fact]
    public void MarkedCommands_RefusesABlockOfTwoLinesAndAMarkerWithoutBlock()
    {
        Assert.Equal("echo hi", MarkedCommands("<!-- readme-test: x -->\n```bash\necho hi\n```\n")["x"]);
        var two = Assert.Throws<FormatException>(() => MarkedCommands("<!-- readme-test: x -->\n```bash\na\nb\n```\n"));
        Assert.Contains("one line", two.Message);
        Assert.Throws<FormatException>(() => MarkedCommands("<!-- readme-test: x -->\ntext\n"));
        Assert.Throws<FormatException>(() => MarkedCommands("<!-- readme-test: x -->\n```bash\na\n"));
    }

    [SkippableFact]
    [Trait("Category", "Install")]
    public void ReadmeCommands_InAFreshClone_InstallRunAndUninstallTheTool()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable(EnabledVariable) == "1",
            $"set {EnabledVariable}=1 to run it: clones the repository, packs and installs the tool (minutes)");

        using var temp = new TempFolder("readme-install");
        string clone = temp.Path("clone");
        string home = temp.Folder("dotnet-home");
        string toolsDir = Path.Combine(home, ".dotnet", "tools");
        var env = PrivateEnvironment(home, toolsDir);

        Expect(Run("git", ["clone", "--quiet", RepoRoot, clone], temp.FullPath, env, TimeSpan.FromMinutes(2)), "git clone");
        // The commands a newcomer reads: the clone's README.
        var commands = MarkedCommands(File.ReadAllText(Path.Combine(clone, "README.md")));

        Expect(Bash(commands["install"], clone, env, TimeSpan.FromMinutes(20)), "install");
        string shim = Path.Combine(toolsDir, "onnx-outliers");
        Assert.True(File.Exists(shim), $"{shim} missing after the install command");
        AssertToolPackageIsLinuxOnly(Path.Combine(clone, "artifacts"));

        var which = Expect(Bash("command -v onnx-outliers", clone, env, TimeSpan.FromSeconds(30)), "command -v");
        Assert.Equal(shim, which.Stdout.Trim());

        var run = Expect(Bash(commands["run"], clone, env, TimeSpan.FromMinutes(2)), "run");
        Assert.Contains("block 1", run.Stdout);
        Assert.Contains("lm head", run.Stdout);

        // The demo through the installed tool: its model and text travel in the tool package.
        var demo = Expect(Bash(commands["demo"], clone, env, TimeSpan.FromMinutes(15)), "demo");
        Assert.Contains("mitigated + w8a8-static", demo.Stdout);
        string report = Path.Combine(clone, global::OnnxOutlierTools.Cli.Commands.RunCommand.DemoOutput, "report.html");
        Assert.True(File.Exists(report), $"{report} missing after the demo");
        Assert.Contains("id=\"pipeline\"", File.ReadAllText(report));
        output.WriteLine(demo.Stdout);

        Expect(Bash(commands["uninstall"], clone, env, TimeSpan.FromMinutes(2)), "uninstall");
        Assert.False(File.Exists(shim), $"{shim} still there after the uninstall command");
        Assert.NotEqual(shim, Bash("command -v onnx-outliers || true", clone, env, TimeSpan.FromSeconds(30)).Stdout.Trim());
    }

    /// <summary>The RID-specific tool package holds the linux-x64 ONNX Runtime and none of the Windows DLLs
    /// that the ONNX Runtime package would otherwise add (Directory.Build.targets).</summary>
    private void AssertToolPackageIsLinuxOnly(string artifacts)
    {
        string[] packages = Directory.GetFiles(artifacts, "*.nupkg").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        output.WriteLine("artifacts: " + string.Join(", ", packages.Select(p => $"{p} ({new FileInfo(Path.Combine(artifacts, p)).Length:N0} bytes)")));
        Assert.Equal(["OnnxOutlierTools.Cli.0.1.0.nupkg", "OnnxOutlierTools.Cli.linux-x64.0.1.0.nupkg"], packages);
        using var zip = ZipFile.OpenRead(Path.Combine(artifacts, "OnnxOutlierTools.Cli.linux-x64.0.1.0.nupkg"));
        var entries = zip.Entries.Select(e => e.FullName).ToArray();
        Assert.Contains("tools/net10.0/linux-x64/libonnxruntime.so", entries);
        Assert.Contains("tools/net10.0/linux-x64/onnx-outliers.dll", entries);
        Assert.DoesNotContain(entries, e => e.Contains("runtimes/win-", StringComparison.OrdinalIgnoreCase)
            || Path.GetFileName(e).StartsWith("onnxruntime", StringComparison.OrdinalIgnoreCase) && e.EndsWith(".dll", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Commands of the README blocks marked <c>&lt;!-- readme-test: NAME --&gt;</c>: the marker line,
    /// then a fenced code block of exactly one line.</summary>
    internal static Dictionary<string, string> MarkedCommands(string markdown)
    {
        const string prefix = "<!-- readme-test:";
        var lines = markdown.Replace("\r\n", "\n").Split('\n');
        var commands = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].Trim();
            if (!line.StartsWith(prefix, StringComparison.Ordinal) || !line.EndsWith("-->", StringComparison.Ordinal)) continue;
            string name = line[prefix.Length..^3].Trim();
            if (i + 1 >= lines.Length || !lines[i + 1].TrimStart().StartsWith("```", StringComparison.Ordinal))
                throw new FormatException($"README marker '{name}' (line {i + 1}) is not followed by a code block");
            int close = Array.FindIndex(lines, i + 2, l => l.TrimStart().StartsWith("```", StringComparison.Ordinal));
            if (close < 0) throw new FormatException($"README marker '{name}' (line {i + 1}): code block not closed");
            var body = lines[(i + 2)..close].Where(l => l.Trim().Length > 0).ToArray();
            if (body.Length != 1) throw new FormatException($"README marker '{name}' (line {i + 1}): the block must be one line, has {body.Length}");
            if (!commands.TryAdd(name, body[0].Trim())) throw new FormatException($"README marker '{name}' appears twice");
            i = close;
        }
        return commands;
    }

    /// <summary>This process's environment with the dotnet CLI home (global tools, first-run state, NuGet
    /// config) moved to <paramref name="home"/>, the NuGet package cache kept where it is (no downloads),
    /// the private tools folder first on PATH, and the MSBuild variables that `dotnet test` leaves removed.</summary>
    private static Dictionary<string, string> PrivateEnvironment(string home, string toolsDir)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            string key = (string)e.Key;
            if (key.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || key.StartsWith("DOTNET_HOST_PATH", StringComparison.Ordinal)) continue;
            env[key] = (string?)e.Value ?? "";
        }
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        env["DOTNET_CLI_HOME"] = home;
        env["NUGET_PACKAGES"] = packages;
        env["DOTNET_NOLOGO"] = "1";
        env["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        env["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        env["MSBUILDDISABLENODEREUSE"] = "1"; // no build nodes left running in the clone
        env["PATH"] = toolsDir + Path.PathSeparator + (env.GetValueOrDefault("PATH") ?? "");
        return env;
    }

    private sealed record Result(int ExitCode, string Stdout, string Stderr, string What);

    private Result Expect(Result r, string step)
    {
        Assert.True(r.ExitCode == 0, $"{step}: `{r.What}` exited {r.ExitCode}\n{Tail(r.Stdout)}\n{Tail(r.Stderr)}");
        return r;
    }

    private Result Bash(string command, string dir, Dictionary<string, string> env, TimeSpan timeout) =>
        Run("/bin/bash", ["-c", command], dir, env, timeout);

    private Result Run(string file, string[] args, string dir, Dictionary<string, string> env, TimeSpan timeout)
    {
        string what = string.Join(' ', [file, .. args]);
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment.Clear();
        foreach (var (k, v) in env) psi.Environment[k] = v;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"`{what}` ran past {timeout}\n{Tail(stdout.ToString())}\n{Tail(stderr.ToString())}");
        }
        process.WaitForExit();
        output.WriteLine($"$ {what}  (exit {process.ExitCode}, {clock.Elapsed.TotalSeconds:F1} s)");
        output.WriteLine(Tail(stdout.ToString(), 1500));
        if (stderr.Length > 0) output.WriteLine("stderr: " + Tail(stderr.ToString(), 1500));
        return new Result(process.ExitCode, stdout.ToString(), stderr.ToString(), what);
    }

    private static string Tail(string text, int chars = 4000) => text.Length <= chars ? text : "..." + text[^chars..];

    private static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) return dir.FullName;
            throw new InvalidOperationException("repository root (OnnxOutlierTools.sln) not found");
        }
    }
}
