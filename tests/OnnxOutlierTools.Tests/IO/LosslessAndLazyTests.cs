using System.Diagnostics;
using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Fields this version does not know survive a load/save; external data is mapped, not read.</summary>
public class LosslessAndLazyTests
{
    /// <summary>A message's bytes with an extra field (number 1000, length-delimited) appended.</summary>
    private static T WithUnknownField<T>(T message, MessageParser<T> parser, string payload) where T : IMessage<T>
    {
        var bytes = message.ToByteArray().ToList();
        using var extra = new MemoryStream();
        var output = new CodedOutputStream(extra);
        output.WriteTag(1000, WireFormat.WireType.LengthDelimited);
        output.WriteString(payload);
        output.Flush();
        bytes.AddRange(extra.ToArray());
        return parser.ParseFrom(bytes.ToArray());
    }

    [Fact]
    public void UnknownFields_OnModelGraphNodeTensorAndValueInfo_SurviveLoadAndSave()
    {
        using var temp = new TempFolder("unknown");
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixtures.Export("distilbert-optimum", "model.onnx")));
        var graph = proto.Graph;
        graph.Node[5] = WithUnknownField(graph.Node[5], NodeProto.Parser, "node-future");
        graph.Initializer[0] = WithUnknownField(graph.Initializer[0], TensorProto.Parser, "tensor-future");
        graph.Input[0] = WithUnknownField(graph.Input[0], ValueInfoProto.Parser, "input-future");
        graph.Node[7].Attribute.Add(WithUnknownField(new AttributeProto { Name = "future_attr", Type = AttributeProto.Types.AttributeType.Int, I = 3 }, AttributeProto.Parser, "attr-future"));
        proto.Graph = WithUnknownField(graph, GraphProto.Parser, "graph-future");
        proto = WithUnknownField(proto, ModelProto.Parser, "model-future");
        string source = temp.Path("source.onnx");
        File.WriteAllBytes(source, proto.ToByteArray());

        using var model = ModelReader.Load(source);
        string saved = temp.Path("saved.onnx");
        ModelWriter.Save(model, saved, new SaveOptions { Layout = TensorLayout.Embed });
        byte[] bytes = File.ReadAllBytes(saved);
        var text = System.Text.Encoding.UTF8.GetString(bytes);
        foreach (var marker in new[] { "model-future", "graph-future", "node-future", "tensor-future", "input-future", "attr-future" })
            Assert.Contains(marker, text);
        Assert.Equal(proto, ModelProto.Parser.ParseFrom(bytes)); // and nothing else changed
    }

    [Fact]
    public void Load_TenGigabytesOfExternalWeights_ReadsNoneOfThem()
    {
        using var temp = new TempFolder("lazy");
        // A sparse 10 GiB data file: no disk blocks, so a load that read it would take long and page in 10 GiB.
        const long gib = 1L << 30;
        using (var data = new FileStream(temp.Path("model.onnx.data"), FileMode.CreateNew)) data.SetLength(10 * gib);
        var graph = new GraphProto { Name = "big" };
        for (int i = 0; i < 10; i++)
        {
            var t = new TensorProto { Name = $"w{i}", DataType = (int)TensorDataType.Float16, DataLocation = TensorProto.Types.DataLocation.External };
            t.Dims.Add([32768, 16384]); // 1 GiB each
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "model.onnx.data" });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = (i * gib).ToString(System.Globalization.CultureInfo.InvariantCulture) });
            t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = gib.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            graph.Initializer.Add(t);
            graph.Node.Add(new NodeProto { OpType = "Identity", Input = { $"w{i}" }, Output = { $"y{i}" } });
            graph.Output.Add(new ValueInfoProto { Name = $"y{i}" });
        }
        var proto = new ModelProto { IrVersion = 8, Graph = graph, OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 17 } } };
        File.WriteAllBytes(temp.Path("model.onnx"), proto.ToByteArray());

        var clock = Stopwatch.StartNew();
        using var model = ModelReader.Load(temp.Path("model.onnx"));
        clock.Stop();
        Assert.Equal(10, model.Graph.Initializers.Count);
        Assert.All(model.Graph.Initializers, v => Assert.Equal(TensorStorage.External, v.ConstValue!.Storage));
        Assert.Equal(10 * gib, model.Graph.Initializers.Sum(v => v.ConstValue!.ByteLength));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"load took {clock.Elapsed}");
        string dataPath = temp.Path("model.onnx.data");
        if (OperatingSystem.IsLinux())
            Assert.True(ResidentKilobytes(dataPath) == 0, $"{ResidentKilobytes(dataPath)} KiB of the data file are resident after load");
        // Touching one tensor's slice reads just that slice (one page).
        Assert.Equal(0, model.Graph.Initializers[9].ConstValue!.GetBytes(gib - 16, 16)[15]);
        if (OperatingSystem.IsLinux())
            Assert.True(ResidentKilobytes(dataPath) is > 0 and <= 64, $"{ResidentKilobytes(dataPath)} KiB resident after reading 16 bytes");
    }

    /// <summary>Resident size of this process's mappings of <paramref name="path"/> (Linux /proc/self/smaps),
    /// which other tests running in parallel cannot disturb.</summary>
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
