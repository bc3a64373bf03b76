using Google.Protobuf;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>The streaming serializer writes exactly the bytes of the converter's full ModelProto
/// (the reference: <c>ProtoConverter.ToProto(model).WriteTo</c>), and --embed streams tensor data instead
/// of copying it into the process.</summary>
public sealed class ModelSerializerTests : IDisposable
{
    private readonly TempFolder _temp = new("serializer");

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string> FixtureFiles
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (string dir in new[] { "exports", "exports-modern" })
                foreach (string file in Directory.EnumerateFiles(Fixtures.Path(dir), "*.onnx", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                    data.Add(Path.GetRelativePath(Fixtures.Root, file));
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void Write_Fixture_IsByteEqualToTheConvertersProto(string relativePath)
    {
        using var model = ModelReader.Load(Fixtures.Path(relativePath), new LoadOptions { RequireExternalData = false });
        // As the writer's Preserve layout does: external tensors keep their reference, the rest embedded.
        AssertByteEqual(model, PreserveReferences);
    }

    [Theory]
    [InlineData("llama-genai-gqa-fp32")]
    [InlineData("llama-genai-mha-fp16")]
    public void Write_FixtureWithAllTensorsEmbedded_IsByteEqualToTheConvertersProto(string fixture)
    {
        using var model = ModelReader.Load(Fixtures.Export(fixture, "model.onnx"));
        AssertByteEqual(model, _ => TensorProtoPlacement.Embedded);
    }

    [Fact]
    public void Write_InMemoryGeneratedRenamedAndEmptyTensors_IsByteEqualToTheConvertersProto()
    {
        using var model = SyntheticGraph.Create(50, largeTensorBytes: 3 << 20);
        var g = model.Graph;
        g.AddInitializer("empty", ArrayTensor.Zeros(TensorDataType.Float16, 0, 4));
        g.AddInitializer("scalar", ArrayTensor.Create<long>([42]));
        // A typed-field protobuf tensor under a new name goes out as raw_data (the converter's rule).
        var typed = new Onnx.Protobuf.TensorProto { Name = "typed", DataType = (int)TensorDataType.Float, DocString = "kept" };
        typed.Dims.Add(3);
        typed.FloatData.Add([1f, 2f, 3f]);
        typed.MetadataProps.Add(new Onnx.Protobuf.StringStringEntryProto { Key = "k", Value = "v" });
        g.AddInitializer("typed_renamed", new ProtoTensor(typed));
        // A nested graph (an If branch) with an in-memory initializer: converted whole, measured without copying.
        var branch = new Graph("then");
        var w = branch.AddInitializer("w", ArrayTensor.Create<float>([1f, 2f, 3f], 3));
        var identity = new Node("", "Identity", [w], ["branch_out"]);
        branch.Append(identity);
        branch.AddOutput(identity.Outputs[0]!);
        var cond = g.AddInitializer("cond", ArrayTensor.Create<bool>([true]));
        var ifNode = new Node("", "If", [cond], ["if_out"],
            [new Attr(new Onnx.Protobuf.AttributeProto { Name = "then_branch", Type = Onnx.Protobuf.AttributeProto.Types.AttributeType.Graph }, [branch])]);
        branch.ParentNode = ifNode;
        g.Append(ifNode);
        g.DocString = "graph doc";
        model.DocString = "model doc";
        model.Metadata.Add(new("key", "value"));
        AssertByteEqual(model, _ => TensorProtoPlacement.Embedded);
        AssertByteEqual(model, v => v.Name == "big" ? TensorProtoPlacement.External("model.onnx.data", 65536) : TensorProtoPlacement.Embedded);
    }

    [Fact]
    public void Save_Embed200MBExternalTensor_AllocatesFarLessThanTheTensor()
    {
        const long tensorBytes = 200L << 20;
        string source = _temp.Path("source", "model.onnx");
        using (var generated = SyntheticGraph.Create(10, tensorBytes))
            ModelWriter.Save(generated, source, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        using var model = ModelReader.Load(source);

        long before = GC.GetAllocatedBytesForCurrentThread();
        var result = ModelWriter.Save(model, _temp.Path("embedded", "model.onnx"), new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, result.ExternalTensors);
        Assert.True(new FileInfo(result.ModelPath).Length > tensorBytes);
        // Before the streaming serializer the save held a ByteString copy of every tensor (>= 200 MiB).
        Assert.True(allocated < 8L << 20, $"embedding a {tensorBytes >> 20} MiB tensor allocated {allocated >> 20} MiB");
        using var reloaded = ModelReader.Load(result.ModelPath);
        var comparison = ModelComparison.Compare(model, reloaded);
        Assert.True(comparison.AreEqual, comparison.ToString());
    }

    [Fact]
    public void Write_ToANonFileStream_ReadsMappedDataInChunksAndMatchesMeasure()
    {
        const long tensorBytes = 24L << 20;
        string source = _temp.Path("source", "model.onnx");
        using (var generated = SyntheticGraph.Create(10, tensorBytes))
            ModelWriter.Save(generated, source, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        using var model = ModelReader.Load(source);
        var counter = new CountingStream();

        long before = GC.GetAllocatedBytesForCurrentThread();
        ModelSerializer.Write(model, counter, _ => TensorProtoPlacement.Embedded);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(ModelSerializer.Measure(model, _ => TensorProtoPlacement.Embedded), counter.Length);
        Assert.True(counter.Length > tensorBytes);
        Assert.True(allocated < 4L << 20, $"streaming a {tensorBytes >> 20} MiB tensor allocated {allocated >> 20} MiB");
    }

    private static TensorProtoPlacement PreserveReferences(Value v) =>
        v.ConstValue!.Storage == TensorStorage.External
            ? TensorProtoPlacement.External(ExternalDataReference.Parse(v.ConstValue.Source!).Location, ExternalDataReference.Parse(v.ConstValue.Source!).Offset)
            : TensorProtoPlacement.Embedded;

    private static void AssertByteEqual(Model model, Func<Value, TensorProtoPlacement> placement)
    {
        var converter = new ProtoConverter(v => placement(v) is { IsExternal: true } p
            ? ProtoConverter.External(v.Name, v.ConstValue!, p.Location!, p.Offset)
            : ProtoConverter.Embedded(v.Name, v.ConstValue!));
        byte[] expected = converter.ToProto(model).ToByteArray();
        using var written = new MemoryStream();
        ModelSerializer.Write(model, written, placement);
        byte[] actual = written.ToArray();
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(expected.AsSpan().SequenceEqual(actual), $"first difference at byte {expected.AsSpan().CommonPrefixLength(actual)} of {expected.Length}");
        Assert.Equal(expected.Length, ModelSerializer.Measure(model, placement));
    }

    /// <summary>A write-only stream that keeps nothing but the count.</summary>
    private sealed class CountingStream : Stream
    {
        private long _length;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => _length += count;
        public override void Write(ReadOnlySpan<byte> buffer) => _length += buffer.Length;
    }
}
