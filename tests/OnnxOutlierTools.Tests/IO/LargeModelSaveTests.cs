using System.Buffers.Binary;
using System.Diagnostics;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>A protobuf cannot exceed 2 GB: a save that would is moved to external data automatically.
/// The full-size test writes a 2.15 GB generated tensor (its bytes are computed chunk by chunk, never
/// held in memory); the lowered-limit tests take the same code path with a small limit.</summary>
public sealed class LargeModelSaveTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _temp = new("large");

    private const int Width = 1024;

    /// <summary>Element e of the generated weight: 24 random-looking bits scaled into [-0.5, 0.5), exact in float32.</summary>
    private static float ValueAt(long e)
    {
        ulong h = (ulong)e * 0x9E3779B97F4A7C15UL;
        h ^= h >> 29;
        return ((long)(h >> 40) - (1L << 23)) * (1f / (1 << 24));
    }

    /// <summary>Bytes of the generated weight from any byte offset (also unaligned ones).</summary>
    private static void Fill(long byteOffset, Span<byte> destination)
    {
        Span<byte> element = stackalloc byte[4];
        int done = 0;
        while (done < destination.Length)
        {
            long at = byteOffset + done;
            int within = (int)(at % 4);
            if (within == 0 && destination.Length - done >= 4)
            {
                BinaryPrimitives.WriteSingleLittleEndian(destination[done..], ValueAt(at / 4));
                done += 4;
                continue;
            }
            BinaryPrimitives.WriteSingleLittleEndian(element, ValueAt(at / 4));
            int n = Math.Min(4 - within, destination.Length - done);
            element.Slice(within, n).CopyTo(destination[done..]);
            done += n;
        }
    }

    private static float BiasAt(int j) => j * 0.25f - 64;

    /// <summary>out = Gather(W, ids) + bias, W [rows, 1024] generated, bias [1024] in memory.</summary>
    private static Model GatherModel(long rows)
    {
        var graph = new Graph("large_gather");
        var ids = graph.AddInput("ids", TensorDataType.Int64, [new Dim(3)]);
        var w = graph.AddInitializer("W", new GeneratedTensor(TensorDataType.Float, [rows, Width], Fill));
        var bias = graph.AddInitializer("bias", ArrayTensor.Create<float>(Enumerable.Range(0, Width).Select(BiasAt).ToArray(), Width));
        var gather = new Node("", "Gather", [w, ids], ["rows"], [Attr.Int("axis", 0)], name: "gather");
        graph.Append(gather);
        var add = new Node("", "Add", [gather.Outputs[0], bias], ["out"], name: "add_bias");
        graph.Append(add);
        graph.AddOutput(add.Outputs[0]!);
        add.Outputs[0]!.SetTensorType(TensorDataType.Float, [new Dim(3), new Dim(Width)]);
        var model = new Model(graph, irVersion: 8) { ProducerName = "onnx-outliers tests" };
        model.OpsetImports.Add(new OpsetId("", 17));
        return model;
    }

    /// <summary>Runs the saved model on three rows and checks every value against the generator.</summary>
    private static void AssertGatherRuns(string path, params long[] rows)
    {
        var outputs = ModelRunner.Run(path, [TensorData.Create("ids", rows, rows.Length)], SessionSettings.CpuUnoptimized);
        var values = outputs[0].AsSpan<float>();
        for (int r = 0; r < rows.Length; r++)
            for (int j = 0; j < Width; j++)
                Assert.Equal(ValueAt(rows[r] * Width + j) + BiasAt(j), values[r * Width + j]);
    }

    /// <summary>About 20 s on 2 cores (writing and fsyncing 2.15 GB); exclude with --filter "Category!=Large".</summary>
    [SkippableFact]
    [Trait("Category", "Large")]
    public void Save_ModelAbove2GB_GoesExternalAutomaticallyAndReloads()
    {
        const long rows = 525_000; // 2,150,400,000 bytes > 2^31
        var drive = new DriveInfo(_temp.FullPath);
        Skip.If(drive.AvailableFreeSpace < 6L << 30, $"needs 6 GB free in {_temp.FullPath}, {drive.AvailableFreeSpace >> 20} MB available");

        var clock = Stopwatch.StartNew();
        using var model = GatherModel(rows);
        string path = _temp.Path("big.onnx");
        var result = ModelWriter.Save(model, path); // default options: Preserve layout, 2 GB protobuf limit, durable
        output.WriteLine($"save: {clock.Elapsed.TotalSeconds:F1} s");

        Assert.True(result.ForcedExternal);
        Assert.Equal(2, result.ExternalTensors);
        Assert.Equal(rows * Width * 4 + Width * 4, result.ExternalBytes);
        Assert.Equal(_temp.Path("big.onnx.data"), result.DataPath);
        Assert.True(new FileInfo(path).Length < 4096, $".onnx is {new FileInfo(path).Length} bytes");
        Assert.True(new FileInfo(result.DataPath!).Length >= rows * Width * 4);
        Assert.Equal(["big.onnx", "big.onnx.data"], _temp.Files());

        clock.Restart();
        using (var reloaded = ModelReader.Load(path))
        {
            var w = Assert.IsType<MappedTensor>(reloaded.Graph.FindInitializer("W")!.ConstValue);
            Assert.Equal([rows, (long)Width], w.Dims);
            long length = w.ByteLength;
            long[] offsets = [0, 1, 4093, 1L << 20, int.MaxValue - 6, 1L << 31, (1L << 31) + 3, length - 4096, length - 5];
            foreach (long offset in offsets)
            {
                int n = (int)Math.Min(4096, length - offset);
                var expected = new byte[n];
                Fill(offset, expected);
                Assert.True(w.GetBytes(offset, n).SequenceEqual(expected), $"bytes at offset {offset}");
            }
            Assert.Equal(BiasAt(7), reloaded.Graph.FindInitializer("bias")!.ConstValue!.AsSpan<float>()[7]);
        }
        output.WriteLine($"reload + spot checks: {clock.Elapsed.TotalSeconds:F1} s");

        clock.Restart();
        // Rows before, across and after the 2^31-byte boundary (row 524288 starts exactly there).
        AssertGatherRuns(path, 0, 524_288, rows - 1);
        output.WriteLine($"ORT session + Gather: {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public void Save_LoweredProtobufLimit_GoesExternalAndStaysEqual()
    {
        using var model = GatherModel(rows: 512); // 2 MB
        string path = _temp.Path("limited.onnx");
        var result = ModelWriter.Save(model, path, new SaveOptions { ProtobufLimit = 1 << 20, Durable = false });

        Assert.True(result.ForcedExternal);
        Assert.Equal(2, result.ExternalTensors);
        Assert.True(new FileInfo(path).Length < 4096);
        using var reloaded = ModelReader.Load(path);
        Assert.IsType<MappedTensor>(reloaded.Graph.FindInitializer("W")!.ConstValue);
        var comparison = ModelComparison.Compare(model, reloaded);
        Assert.True(comparison.AreEqual, comparison.ToString());
        AssertGatherRuns(path, 0, 300, 511);
    }

    [Fact]
    public void Save_EmbedLayoutAboveLoweredLimit_IsForcedExternal()
    {
        using var model = GatherModel(rows: 64); // 256 KB
        string path = _temp.Path("embed.onnx");
        var result = ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.Embed, ProtobufLimit = 64 << 10, Durable = false });
        Assert.True(result.ForcedExternal);
        Assert.True(result.ExternalTensors > 0);
        Assert.True(File.Exists(result.DataPath));

        // Below the limit the same layout embeds everything.
        var embedded = ModelWriter.Save(model, _temp.Path("fits.onnx"), new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        Assert.False(embedded.ForcedExternal);
        Assert.Null(embedded.DataPath);
        using var reloaded = ModelReader.Load(_temp.Path("fits.onnx"));
        Assert.True(ModelComparison.Compare(model, reloaded).AreEqual);
    }

    [Fact]
    public void Save_GraphLargerThanLimitEvenWithExternalData_IsRefusedAndWritesNothing()
    {
        using var model = GatherModel(rows: 64);
        string folder = _temp.Folder("refused");
        var ex = Assert.Throws<ModelSaveException>(() =>
            ModelWriter.Save(model, Path.Combine(folder, "m.onnx"), new SaveOptions { ProtobufLimit = 100 }));
        Assert.Contains("protobuf limit", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    public void Dispose() => _temp.Dispose();
}
