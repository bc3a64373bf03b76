using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Runs alone: it measures the process's managed heap, which parallel tests would disturb.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryMeasurementCollection
{
    public const string Name = "memory measurements";
}

/// <summary>What a loaded graph costs per node, and that the compact IR (no NodeProto kept, plain
/// attributes as values, presence flags) still writes back every byte it read.</summary>
[Collection(MemoryMeasurementCollection.Name)]
public sealed class LoadMemoryTests : IDisposable
{
    private readonly TempFolder _temp = new("load-memory");

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Load_100kNodeGraph_RetainsUnder700ManagedBytesPerNode()
    {
        const int nodes = 100_000;
        string path = _temp.Path("model.onnx");
        using (var generated = SyntheticGraph.Create(nodes))
            ModelWriter.Save(generated, path, new SaveOptions { Durable = false });

        long before = GC.GetTotalMemory(forceFullCollection: true);
        using var model = ModelReader.Load(path);
        long retained = GC.GetTotalMemory(forceFullCollection: true) - before;

        Assert.Equal(nodes, model.Graph.Nodes.Count);
        // Measured (tools/Benchmarks memory): 1406 bytes/node before the compact IR, 476 after.
        double perNode = retained / (double)nodes;
        Assert.True(perNode < 700, $"{perNode:F0} managed bytes retained per node");
        GC.KeepAlive(model);
    }

    [Fact]
    public void LoadAndSave_NodesWithUnmodelledFieldsAndPresence_KeepEveryByte()
    {
        var graph = new GraphProto { Name = "g" };
        graph.Input.Add(new ValueInfoProto { Name = "x" });
        // Explicitly empty name and domain (present on the wire), no op_type presence games.
        graph.Node.Add(Node("", "Relu", "", ["x"], ["a"]));
        // Fields the IR does not model: doc_string, overload, metadata.
        var documented = Node("n1", "Softmax", "ai.onnx", ["a"], ["b"]);
        documented.DocString = "node doc";
        documented.Overload = "o";
        documented.MetadataProps.Add(new StringStringEntryProto { Key = "k", Value = "v" });
        documented.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = -1 });
        graph.Node.Add(documented);
        // Attributes that are not plain values: a doc_string, a type-less INT, an INT with a stray float.
        var odd = Node("n2", "LeakyRelu", null, ["b"], ["c"]);
        odd.Attribute.Add(new AttributeProto { Name = "alpha", Type = AttributeProto.Types.AttributeType.Float, F = 0.1f, DocString = "d" });
        odd.Attribute.Add(new AttributeProto { Name = "legacy", I = 3 });
        odd.Attribute.Add(new AttributeProto { Name = "stray", Type = AttributeProto.Types.AttributeType.Int, I = 1, F = 2f });
        odd.Attribute.Add(new AttributeProto { Name = "perm", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 1, 0 } });
        odd.Attribute.Add(new AttributeProto { Name = "mode", Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8("x") });
        graph.Node.Add(odd);
        graph.Node.Add(new NodeProto { Input = { "c" }, Output = { "d" } }); // no name, no op_type, no domain
        graph.Output.Add(new ValueInfoProto { Name = "d" });
        var proto = new ModelProto { IrVersion = 8, Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        byte[] original = proto.ToByteArray();

        using var model = ModelReader.LoadFromBytes(original, _temp.Path("model.onnx"));
        using var written = new MemoryStream();
        ModelSerializer.Write(model, written, _ => TensorProtoPlacement.Embedded);

        Assert.Equal(original, written.ToArray());
        Assert.Equal("node doc", model.Graph.Nodes[1].DocString);
        Assert.Equal(-1, model.Graph.Nodes[1].GetInt("axis", 0));
        Assert.Equal([1L, 0L], model.Graph.Nodes[2].GetAttribute("perm")!.AsInts());
        Assert.Equal("x", model.Graph.Nodes[2].GetString("mode"));
    }

    [Theory]
    [InlineData(10)]  // nodes parsed one at a time
    [InlineData(40)]  // about 120 message levels: deeper than a lone node parse allows, so the whole-message parse takes over
    public void Load_NestedIfGraphs_LoadsUnderTheDefaultLimitAndIsRefusedUnderALowOne(int depth)
    {
        GraphProto Level(int remaining)
        {
            var g = new GraphProto { Name = $"g{remaining}" };
            g.Output.Add(new ValueInfoProto { Name = $"o{remaining}" });
            var node = Node($"if{remaining}", remaining == 0 ? "Identity" : "If", null, ["c"], [$"o{remaining}"]);
            if (remaining > 0)
                node.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Level(remaining - 1) });
            g.Node.Add(node);
            return g;
        }
        var main = Level(depth);
        main.Input.Add(new ValueInfoProto { Name = "c" });
        var proto = new ModelProto { IrVersion = 8, Graph = main };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        byte[] bytes = proto.ToByteArray();

        using (var model = ModelReader.LoadFromBytes(bytes, _temp.Path("deep.onnx")))
        {
            Assert.Equal(depth + 1, model.Graph.SelfAndSubgraphs().Count());
            using var written = new MemoryStream();
            ModelSerializer.Write(model, written, _ => TensorProtoPlacement.Embedded);
            Assert.Equal(bytes, written.ToArray());
        }
        var error = Assert.Throws<ModelLoadException>(() =>
            ModelReader.LoadFromBytes(bytes, _temp.Path("deep.onnx"), new LoadOptions { RecursionLimit = depth * 3 / 2 }));
        Assert.Contains("not a valid ONNX protobuf", error.Message);
    }

    private static NodeProto Node(string? name, string opType, string? domain, string[] inputs, string[] outputs)
    {
        var node = new NodeProto { OpType = opType };
        if (name is not null) node.Name = name;
        if (domain is not null) node.Domain = domain;
        node.Input.Add(inputs);
        node.Output.Add(outputs);
        return node;
    }
}

/// <summary>An embedded model is parsed in place from the memory-mapped file: large raw_data tensors are
/// views into the mapping, so a load neither copies them nor reads their pages.</summary>
[Collection(MemoryMeasurementCollection.Name)]
public sealed class EmbeddedLoadTests : IDisposable
{
    private readonly TempFolder _temp = new("embedded-load");

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Load_EmbeddedModel_KeepsRawDataInTheMappedFile()
    {
        const long tensorBytes = 64L << 20;
        string path = _temp.Path("model.onnx");
        using (var model = SyntheticGraph.Create(200, tensorBytes))
            ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        long before = GC.GetTotalMemory(forceFullCollection: true);
        using var loaded = ModelReader.Load(path);
        long retained = GC.GetTotalMemory(forceFullCollection: true) - before;
        var big = loaded.Graph.FindInitializer("big")!.ConstValue!;
        Assert.Equal(TensorStorage.Embedded, big.Storage);
        Assert.Equal(tensorBytes, big.ByteLength);
        Assert.True(retained < tensorBytes / 10, $"the load retained {retained} managed bytes for a {tensorBytes}-byte tensor");
        if (OperatingSystem.IsLinux())
        {
            long resident = ResidentKilobytes(path);
            Assert.True(resident < tensorBytes / 1024 / 10, $"{resident} KiB of the model file resident after load");
        }
        // The data reads as written, and a save writes the same bytes.
        using (var fresh = SyntheticGraph.Create(200, tensorBytes))
            Assert.True(fresh.Graph.FindInitializer("big")!.ConstValue!.DataEquals(big));
        string again = _temp.Path("again.onnx");
        ModelWriter.Save(loaded, again, new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Fact]
    public void Load_TensorsOutliveNothing_DataStaysReadableWhileReferenced()
    {
        string path = _temp.Path("small.onnx");
        using (var model = SyntheticGraph.Create(10, 4096))
            ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        Tensor tensor;
        using (var loaded = ModelReader.Load(path)) tensor = loaded.Graph.FindInitializer("big")!.ConstValue!;
        // The model is disposed and unreachable; the tensor still holds the mapping.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var fresh = SyntheticGraph.Create(10, 4096);
        Assert.True(fresh.Graph.FindInitializer("big")!.ConstValue!.DataEquals(tensor));
    }

    private static long ResidentKilobytes(string path)
    {
        long total = 0;
        bool inMapping = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.Contains('-')) { inMapping = line.EndsWith(path, StringComparison.Ordinal); continue; }
            if (inMapping && line.StartsWith("Rss:", StringComparison.Ordinal))
                total += long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        }
        return total;
    }
}
