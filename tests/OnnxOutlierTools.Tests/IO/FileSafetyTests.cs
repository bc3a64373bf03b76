using System.Diagnostics;
using Google.Protobuf;
using Mono.Unix.Native;
using Onnx.Protobuf;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Links, hard links, devices and FIFOs as inputs and outputs; the checks work on what paths
/// name (resolved real paths and device + inode), never on path strings.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // links, device nodes, FIFOs and inodes as Linux has them
public sealed class FileSafetyTests : IDisposable
{
    private readonly TempFolder _temp = new("file-safety");
    private const string Fixture = "llama-genai-gqa-fp32";

    private static void Link(string target, string link) => File.CreateSymbolicLink(link, target);

    /// <summary>A Hugging Face hub cache: the snapshot's files are relative links into blobs/.</summary>
    private string HubCache()
    {
        string blobs = _temp.Folder("hub/blobs");
        string snapshot = _temp.Folder("hub/snapshots/0123abc/onnx");
        File.Copy(Fixtures.Export(Fixture, "model.onnx"), System.IO.Path.Combine(blobs, "6f1e"));
        File.Copy(Fixtures.Export(Fixture, "model.onnx.data"), System.IO.Path.Combine(blobs, "9a2b"));
        Link("../../../blobs/6f1e", System.IO.Path.Combine(snapshot, "model.onnx"));
        Link("../../../blobs/9a2b", System.IO.Path.Combine(snapshot, "model.onnx.data"));
        return System.IO.Path.Combine(snapshot, "model.onnx");
    }

    [Fact]
    public void HubCacheLinks_AreFollowedForSizesAndData()
    {
        string model = HubCache();
        using var loaded = ModelReader.Load(model);
        var summary = ModelSummary.Create(loaded);
        Assert.Equal(new FileInfo(Fixtures.Export(Fixture, "model.onnx")).Length, summary.FileBytes);
        var data = Assert.Single(summary.ExternalData);
        Assert.True(data.Present);
        Assert.Null(data.Reason);
        Assert.Equal(new FileInfo(Fixtures.Export(Fixture, "model.onnx.data")).Length, data.Bytes);

        var inspect = CliRunner.Run("inspect", model);
        Assert.Equal(0, inspect.ExitCode);
        Assert.DoesNotContain("UNUSABLE", inspect.Stdout);
        string output = _temp.Path("out", "model.onnx");
        var convert = CliRunner.Run("convert", model, "-o", output);
        Assert.True(convert.ExitCode == 0, convert.ToString());
        using var original = ModelReader.Load(Fixtures.Export(Fixture, "model.onnx"));
        using var copy = ModelReader.Load(output);
        Assert.True(ModelComparison.Compare(original, copy).AreEqual);
    }

    /// <summary>A crafted model whose one external tensor lives at <paramref name="location"/>.</summary>
    private static byte[] ModelReading(string location, long length)
    {
        var tensor = new TensorProto { Name = "w", DataType = (int)TensorProto.Types.DataType.Uint8, DataLocation = TensorProto.Types.DataLocation.External };
        tensor.Dims.Add(length);
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        var graph = new GraphProto { Name = "g" };
        graph.Initializer.Add(tensor);
        graph.Output.Add(new ValueInfoProto { Name = "w" });
        var proto = new ModelProto { IrVersion = 8, Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return proto.ToByteArray();
    }

    [Fact]
    public void ExternalDataThroughADirectoryLinkOutOfTheFolder_IsRefusedAndNothingIsCopied()
    {
        string secretFolder = _temp.Folder("elsewhere");
        File.WriteAllText(System.IO.Path.Combine(secretFolder, "secret"), "root:x:0:0:root:/root:/bin/bash\n");
        string folder = _temp.Folder("crafted");
        Link(secretFolder, System.IO.Path.Combine(folder, "sub"));
        string model = System.IO.Path.Combine(folder, "model.onnx");
        File.WriteAllBytes(model, ModelReading("sub/secret", 32));

        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(model));
        Assert.Contains("resolves through a symbolic link", ex.Message);
        Assert.Contains(secretFolder, ex.Message);

        string output = _temp.Path("stolen.onnx");
        var convert = CliRunner.Run("convert", model, "-o", output, "--embed");
        Assert.Equal(2, convert.ExitCode);
        Assert.Contains("outside the model folder", convert.Stderr);
        Assert.False(File.Exists(output));
        // inspect refuses it too (it reads no data, but must not report the outside file as usable).
        Assert.Equal(2, CliRunner.Run("inspect", model).ExitCode);
    }

    [Fact]
    public void ExternalDataFileLinkOutOfTheFolder_IsRefused()
    {
        string secretFolder = _temp.Folder("elsewhere");
        File.WriteAllBytes(System.IO.Path.Combine(secretFolder, "secret"), new byte[64]);
        string folder = _temp.Folder("crafted");
        Link(System.IO.Path.Combine(secretFolder, "secret"), System.IO.Path.Combine(folder, "w.bin"));
        string model = System.IO.Path.Combine(folder, "model.onnx");
        File.WriteAllBytes(model, ModelReading("w.bin", 32));
        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(model));
        Assert.Contains("outside the model folder", ex.Message);
    }

    [Fact]
    public void ExternalDataThroughALinkInsideTheFolder_IsAccepted()
    {
        string folder = _temp.Folder("inside");
        _temp.Folder("inside/weights");
        File.WriteAllBytes(System.IO.Path.Combine(folder, "weights", "w.bin"), Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());
        Link("weights", System.IO.Path.Combine(folder, "current"));
        string model = System.IO.Path.Combine(folder, "model.onnx");
        File.WriteAllBytes(model, ModelReading("current/w.bin", 32));
        using var loaded = ModelReader.Load(model);
        Assert.Equal(Enumerable.Range(0, 32).Select(i => (byte)i), loaded.Graph.Initializers[0].ConstValue!.Bytes.ToArray());
    }

    [Fact]
    public void OutputThroughAFolderLinkOntoTheInputsDataFile_IsRefusedByIdentity()
    {
        string real = _temp.Folder("real");
        File.Copy(Fixtures.Export(Fixture, "model.onnx"), System.IO.Path.Combine(real, "model.onnx"));
        File.Copy(Fixtures.Export(Fixture, "model.onnx.data"), System.IO.Path.Combine(real, "model.onnx.data"));
        Link(real, _temp.Path("link"));
        string dataHash = TempFolder.Sha256(System.IO.Path.Combine(real, "model.onnx.data"));
        string modelHash = TempFolder.Sha256(System.IO.Path.Combine(real, "model.onnx"));
        using var model = ModelReader.Load(System.IO.Path.Combine(real, "model.onnx"));

        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, _temp.Path("link", "other.onnx"),
            new SaveOptions { DataFileName = "model.onnx.data", Overwrite = true }));
        Assert.Contains("input of this model", ex.Message);
        // The model file itself, through the link and through a hard link.
        Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, _temp.Path("link", "model.onnx"), new SaveOptions { Overwrite = true }));
        Assert.Equal(0, Syscall.link(System.IO.Path.Combine(real, "model.onnx"), _temp.Path("hard.onnx")));
        var hard = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, _temp.Path("hard.onnx"), new SaveOptions { Overwrite = true }));
        Assert.Contains("loaded from", hard.Message);

        Assert.Equal(dataHash, TempFolder.Sha256(System.IO.Path.Combine(real, "model.onnx.data")));
        Assert.Equal(modelHash, TempFolder.Sha256(System.IO.Path.Combine(real, "model.onnx")));
        Assert.Equal(["model.onnx", "model.onnx.data"], Directory.GetFiles(real).Select(System.IO.Path.GetFileName).Order());
    }

    [Fact]
    public void LinkedOutputs_AreRefusedAndTheLinksKept()
    {
        using var model = SaveSafetyTests.TinyModel(ArrayTensor.Zeros(TensorDataType.Float, 8));
        string target = _temp.Path("target.onnx");
        File.WriteAllText(target, "someone else's file");
        string link = _temp.Path("link.onnx");
        Link(target, link);
        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, link, new SaveOptions { Overwrite = true }));
        Assert.Contains("is a symbolic link", ex.Message);
        Link(_temp.Path("nowhere"), _temp.Path("dangling.onnx"));
        Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, _temp.Path("dangling.onnx"), new SaveOptions { Overwrite = true }));
        Assert.Equal("someone else's file", File.ReadAllText(target));
        Assert.Equal(FileKind.SymbolicLink, FileFacts.OfEntry(link).Kind);
        Assert.False(File.Exists(_temp.Path("nowhere")));

        // A data file name that is a link is refused as well.
        Link(target, _temp.Path("m.onnx.data"));
        var data = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, _temp.Path("m.onnx"),
            new SaveOptions { Layout = TensorLayout.External, ExternalThreshold = 1, Overwrite = true }));
        Assert.Contains("data file", data.Message);
        Assert.Equal("someone else's file", File.ReadAllText(target));
    }

    /// <summary>A null device node of our own (as root; else /dev/null itself), so the test cannot
    /// destroy the system's /dev/null even on code that renames over it.</summary>
    private string NullDevice()
    {
        string node = _temp.Path("null");
        if (Syscall.mknod(node, FilePermissions.S_IFCHR | FilePermissions.DEFFILEMODE, (1UL << 8) | 3) == 0) return node;
        return "/dev/null";
    }

    [Fact]
    public void NullDeviceOutput_IsADryRunThatKeepsTheDevice()
    {
        string device = NullDevice();
        using var model = ModelReader.Load(Fixtures.Export(Fixture, "model.onnx"));
        var result = ModelWriter.Save(model, device);
        Assert.Equal(OutputKind.NullDevice, result.Kind);
        Assert.True(result.ModelBytes > 0);
        Assert.True(result.ExternalTensors > 0);
        var facts = FileFacts.OfEntry(device);
        Assert.Equal(FileKind.CharacterDevice, facts.Kind);
        Assert.True(facts.IsNullDevice);
        Assert.Empty(Directory.GetFiles(System.IO.Path.GetDirectoryName(device)!, ".null.*"));

        var cli = CliRunner.Run("convert", Fixtures.Export(Fixture, "model.onnx"), "-o", device);
        Assert.True(cli.ExitCode == 0, cli.ToString());
        Assert.StartsWith("dry run: wrote ", cli.Stdout);
        var json = System.Text.Json.JsonDocument.Parse(CliRunner.Run("convert", Fixtures.Export(Fixture, "model.onnx"), "-o", device, "--json").Stdout).RootElement;
        Assert.Equal("null-device", json.GetProperty("target").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, json.GetProperty("dataFile").ValueKind);
        Assert.True(json.GetProperty("modelBytes").GetInt64() > 0);
        Assert.Equal(FileKind.CharacterDevice, FileFacts.OfEntry(device).Kind);
        Assert.Equal(FileKind.CharacterDevice, FileFacts.OfEntry("/dev/null").Kind);
    }

    [Fact]
    public async Task FifoOutput_IsStreamedAndAnExternalLayoutIsRefused()
    {
        string fifo = _temp.Path("pipe");
        Assert.Equal(0, Syscall.mkfifo(fifo, FilePermissions.S_IRUSR | FilePermissions.S_IWUSR));
        using var model = ModelReader.Load(Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx"));
        var read = Task.Run(() => File.ReadAllBytes(fifo));
        var result = ModelWriter.Save(model, fifo);
        byte[] bytes = await read.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(OutputKind.Stream, result.Kind);
        Assert.Equal(result.ModelBytes, bytes.Length);
        using var back = ModelReader.LoadFromBytes(bytes, _temp.Path("streamed.onnx"));
        Assert.True(ModelComparison.Compare(model, back).AreEqual);
        Assert.Equal(FileKind.Fifo, FileFacts.OfEntry(fifo).Kind);

        using var external = ModelReader.Load(Fixtures.Export(Fixture, "model.onnx"));
        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(external, fifo));
        Assert.Contains("--embed", ex.Message);
        Assert.Equal(FileKind.Fifo, FileFacts.OfEntry(fifo).Kind);
    }

    [Fact]
    public async Task FifoOrDeviceInput_IsRefusedWithoutBlocking()
    {
        string fifo = _temp.Path("in.onnx");
        Assert.Equal(0, Syscall.mkfifo(fifo, FilePermissions.S_IRUSR | FilePermissions.S_IWUSR));
        var load = Task.Run(() => Assert.Throws<ModelLoadException>(() => ModelReader.Load(fifo)));
        var refused = await load.WaitAsync(TimeSpan.FromSeconds(10)); // a TimeoutException: loading blocked
        Assert.Contains("FIFO", refused.Message);
        Assert.Contains("character device", Assert.Throws<ModelLoadException>(() => ModelReader.Load("/dev/zero")).Message);
    }

    [Fact]
    public void TrailingSlashOutput_IsRefusedAndLeavesNoFolder()
    {
        using var model = SaveSafetyTests.TinyModel(ArrayTensor.Zeros(TensorDataType.Float, 8));
        string folder = _temp.Path("newdir");
        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, folder + "/"));
        Assert.Contains("names a folder", ex.Message);
        Assert.False(Directory.Exists(folder));
    }

    [Fact]
    public void FailedSaveIntoNewFolders_RemovesTheFoldersItCreated()
    {
        using var model = SaveSafetyTests.TinyModel(new GeneratedTensor(TensorDataType.Float, [64], (_, _) => throw new InvalidOperationException("cannot compute")));
        string root = _temp.Path("a");
        Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, System.IO.Path.Combine(root, "b", "c", "m.onnx")));
        Assert.False(Directory.Exists(root));
    }

    [Fact]
    public void PermissionErrors_NameTheOutputFolderNotATemporary()
    {
        string folder = _temp.Folder("locked");
        using var model = SaveSafetyTests.TinyModel(ArrayTensor.Zeros(TensorDataType.Float, 8));
        // Root ignores permission bits; the immutable attribute stops root too.
        bool root = Syscall.getuid() == 0;
        if (root) Assert.Equal(0, Process.Start("chattr", ["+i", folder])!.WaitForExitCode());
        else File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, System.IO.Path.Combine(folder, "m.onnx")));
            Assert.Contains($"cannot write into the folder '{folder}'", ex.Message);
            Assert.DoesNotContain(".tmp", ex.Message);
        }
        finally
        {
            if (root) Process.Start("chattr", ["-i", folder])!.WaitForExit();
            else File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    [Fact]
    public void FileCutRightAfterItsGraph_IsRefused()
    {
        // Field order as exporters write it: ir_version, producer, graph, opset_import. Cutting before
        // opset_import leaves a message that parses.
        var full = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx")));
        var cut = new ModelProto { IrVersion = full.IrVersion, ProducerName = full.ProducerName, Graph = full.Graph };
        string path = _temp.Path("cut.onnx");
        File.WriteAllBytes(path, cut.ToByteArray());
        var ex = Assert.Throws<ModelLoadException>(() => ModelReader.Load(path));
        Assert.Contains("no opset_import", ex.Message);
        Assert.Equal(2, CliRunner.Run("inspect", path).ExitCode);
    }

    [Fact]
    public void ParameterAndByteTotals_DoNotOverflow()
    {
        // 17 external tensors of 2^59 bytes each (each within a tensor's limit; data absent: inspect reads
        // none): 17 * 2^59 > long.MaxValue.
        var graph = new GraphProto { Name = "g" };
        for (int i = 0; i < 17; i++)
        {
            var t = new TensorProto { Name = $"w{i}", DataType = (int)TensorProto.Types.DataType.Uint8, DataLocation = TensorProto.Types.DataLocation.External };
            t.Dims.Add(1L << 59);
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "w.bin" });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = "0" });
            graph.Initializer.Add(t);
        }
        var proto = new ModelProto { IrVersion = 8, Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        string path = _temp.Path("huge.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        using var model = ModelReader.Load(path, new LoadOptions { RequireExternalData = false });
        var summary = ModelSummary.Create(model);
        Assert.Equal((Int128)17 << 59, summary.Initializers.ParameterCount);
        Assert.Equal((Int128)17 << 59, summary.Initializers.Bytes);
        var text = CliRunner.Run("inspect", path);
        Assert.Contains("9,799,832,789,158,199,296 parameters", text.Stdout);
        Assert.DoesNotContain("-", text.Stdout.Split('\n').First(l => l.StartsWith("initializers")));
    }

    public void Dispose() => _temp.Dispose();
}

internal static class ProcessExtensions
{
    public static int WaitForExitCode(this Process process)
    {
        process.WaitForExit();
        return process.ExitCode;
    }
}
