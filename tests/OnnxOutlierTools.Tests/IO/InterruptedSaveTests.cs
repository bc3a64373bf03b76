using System.Diagnostics;
using Google.Protobuf;
using Mono.Unix.Native;
using Onnx.Protobuf;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>A save interrupted by Ctrl-C or SIGTERM removes its temporaries; one killed outright
/// (SIGKILL) leaves them, and the next save of the same output removes them.</summary>
public sealed class InterruptedSaveTests : IDisposable
{
    private readonly TempFolder _temp = new("interrupted-save");

    /// <summary>A model whose one 192 MiB weight is a sparse (hole-only) external file: costs no disk to
    /// make, and `convert --embed` takes long enough to be caught writing.</summary>
    private string BigModel()
    {
        const long size = 192L << 20;
        string folder = _temp.Folder("in");
        using (var data = new FileStream(Path.Combine(folder, "w.bin"), FileMode.CreateNew)) data.SetLength(size);
        var tensor = new TensorProto { Name = "w", DataType = (int)TensorProto.Types.DataType.Uint8, DataLocation = TensorProto.Types.DataLocation.External };
        tensor.Dims.Add(size);
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "w.bin" });
        var graph = new GraphProto { Name = "g" };
        graph.Initializer.Add(tensor);
        graph.Output.Add(new ValueInfoProto { Name = "w" });
        var proto = new ModelProto { IrVersion = 8, Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        string path = Path.Combine(folder, "model.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        return path;
    }

    /// <summary>Starts `onnx-outliers convert --embed` in a child process and stops it (SIGSTOP) as soon as
    /// its temporary appears, so the signal arrives mid-save on any machine.</summary>
    private (Process Child, string Output) StartAndCatchWriting(string model)
    {
        string outFolder = _temp.Folder("out");
        string output = Path.Combine(outFolder, "m.onnx");
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        var start = new ProcessStartInfo(dotnet, [Path.Combine(AppContext.BaseDirectory, "onnx-outliers.dll"), "convert", model, "-o", output, "--embed"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var child = Process.Start(start)!;
        var watch = Stopwatch.StartNew();
        while (Temporaries(outFolder).Length == 0)
        {
            if (child.HasExited) throw new InvalidOperationException($"the save ended before it could be interrupted (exit {child.ExitCode}): {child.StandardError.ReadToEnd()}");
            if (watch.Elapsed > TimeSpan.FromSeconds(60)) { child.Kill(); throw new TimeoutException("no temporary appeared"); }
            Thread.Sleep(2);
        }
        Assert.Equal(0, Syscall.kill(child.Id, Signum.SIGSTOP));
        return (child, output);
    }

    private static string[] Temporaries(string folder) => Directory.GetFiles(folder, ".m.onnx.*.tmp");

    [Theory]
    [InlineData(Signum.SIGTERM)]
    [InlineData(Signum.SIGINT)]
    public void SignalDuringASave_RemovesItsTemporaries(Signum signal)
    {
        string model = BigModel();
        var (child, output) = StartAndCatchWriting(model);
        string folder = Path.GetDirectoryName(output)!;
        Assert.NotEmpty(Temporaries(folder));
        Assert.Equal(0, Syscall.kill(child.Id, signal));
        Assert.Equal(0, Syscall.kill(child.Id, Signum.SIGCONT));
        Assert.True(child.WaitForExit(60_000), "the child did not exit after the signal");
        Assert.NotEqual(0, child.ExitCode);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void KilledSave_LeavesATemporaryThatTheNextSaveRemoves()
    {
        string model = BigModel();
        var (child, output) = StartAndCatchWriting(model);
        string folder = Path.GetDirectoryName(output)!;
        Assert.Equal(0, Syscall.kill(child.Id, Signum.SIGKILL));
        Assert.True(child.WaitForExit(60_000));
        Assert.NotEmpty(Temporaries(folder)); // nothing runs on SIGKILL

        var again = CliRunner.Run("convert", model, "-o", output);
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Empty(Temporaries(folder));
        Assert.True(File.Exists(output));
    }

    public void Dispose() => _temp.Dispose();
}
