using System.Buffers;
using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.IO;

/// <summary>Where one initializer's data goes in a saved model: embedded in the protobuf (raw_data), or
/// in an external data file at an offset (the data itself is written by the caller).</summary>
public readonly record struct TensorProtoPlacement
{
    private TensorProtoPlacement(string? location, long offset)
    {
        Location = location;
        Offset = offset;
    }

    public static TensorProtoPlacement Embedded => default;

    public static TensorProtoPlacement External(string location, long offset)
    {
        ArgumentException.ThrowIfNullOrEmpty(location);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        return new TensorProtoPlacement(location, offset);
    }

    /// <summary>The external data file (relative to the model's folder); null when embedded.</summary>
    public string? Location { get; }
    public long Offset { get; }
    public bool IsExternal => Location is not null;
}

/// <summary>
/// Writes a model's ONNX protobuf to a stream without building the whole <see cref="ModelProto"/>: the
/// main graph's nodes and declarations are serialized one message at a time, and each embedded
/// initializer's raw_data is streamed from its tensor in chunks (a memory-mapped tensor file to file when
/// the kernel can). Memory stays about the size of the graph's protobuf without tensor data, whatever
/// the size of the tensors; the bytes are identical to <c>new ProtoConverter(...).ToProto(model).WriteTo(stream)</c>
/// with the same placements. Nested graphs (If/Loop/Scan bodies) are converted whole, their
/// initializers embedded as copies, as before.
/// </summary>
public static class ModelSerializer
{
    private const int ChunkBytes = 1 << 20;

    // Field tags (field number << 3 | wire type 2, length-delimited) written here by hand.
    private const uint ModelGraphTag = 7 << 3 | 2;
    private const uint GraphNodeTag = 1 << 3 | 2;
    private const uint GraphInitializerTag = 5 << 3 | 2;
    private const uint GraphInputTag = 11 << 3 | 2;
    private const uint GraphOutputTag = 12 << 3 | 2;
    private const uint GraphValueInfoTag = 13 << 3 | 2;
    private const uint TensorRawDataTag = 9 << 3 | 2;

    public static void Write(Model model, Stream output, Func<Value, TensorProtoPlacement> placement)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(placement);
        var plan = Plan(model, placement, measureOnly: false);
        if (plan.GraphSize > int.MaxValue)
            throw new InvalidOperationException($"the graph's protobuf would be {plan.GraphSize} bytes, above the 2 GB protobuf limit; store large tensors as external data");
        var coded = new CodedOutputStream(output, leaveOpen: true);

        // ModelProto fields in number order: 1-6, graph (7), then 8 onwards and unknown fields.
        plan.ModelBefore.WriteTo(coded);
        coded.WriteRawTag((byte)ModelGraphTag);
        coded.WriteLength((int)plan.GraphSize);
        // GraphProto: node (1) and name (2); initializer (5); doc_string (10) and the rest.
        coded.Flush();
        output.Write(plan.GraphBefore.Bytes);
        foreach (var init in plan.Initializers)
        {
            coded.WriteRawTag((byte)GraphInitializerTag);
            if (init.Streamed is not { } tensor)
            {
                coded.WriteMessage(init.Proto);
                continue;
            }
            coded.WriteLength(checked((int)init.Size));
            init.Proto.WriteTo(coded); // fields 1-8
            coded.WriteRawTag((byte)TensorRawDataTag);
            coded.WriteLength(checked((int)tensor.ByteLength));
            coded.Flush();
            CopyData(tensor, output);
            init.After!.WriteTo(coded); // fields 10 onwards and unknown fields
        }
        coded.Flush();
        output.Write(plan.GraphAfter.Bytes);
        plan.ModelAfter.WriteTo(coded);
        coded.Flush();
    }

    /// <summary>The exact byte size <see cref="Write"/> would produce, computed without serializing or
    /// reading any tensor data (so it also works for models far above the 2 GB protobuf limit; a nested
    /// graph's single embedded tensor above 2 GB, which no protobuf can hold, gives long.MaxValue).</summary>
    public static long Measure(Model model, Func<Value, TensorProtoPlacement> placement)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(placement);
        WritePlan plan;
        try { plan = Plan(model, placement, measureOnly: true); }
        catch (TensorTooLargeException) { return long.MaxValue; }
        return plan.ModelBefore.CalculateSize() + 1 + LengthSize(plan.GraphSize) + plan.GraphSize + plan.ModelAfter.CalculateSize();
    }

    private sealed record Initializer(TensorProto Proto, Tensor? Streamed, TensorProto? After, long Size);

    private sealed record WritePlan(ModelProto ModelBefore, ModelProto ModelAfter, Part GraphBefore,
        List<Initializer> Initializers, Part GraphAfter, long GraphSize);

    private static WritePlan Plan(Model model, Func<Value, TensorProtoPlacement> placement, bool measureOnly)
    {
        // Nested graphs go through the converter whole (their tensors are small in practice); when only
        // measuring, their in-memory tensors get a raw_data of the right length and no bytes.
        var converter = new ProtoConverter(v => placement(v) is { IsExternal: true } p
            ? ProtoConverter.External(v.Name, v.ConstValue!, p.Location!, p.Offset)
            : measureOnly ? SizeOnlyEmbedded(v.Name, v.ConstValue!) : ProtoConverter.Embedded(v.Name, v.ConstValue!));

        var header = ProtoConverter.ModelHeader(model);
        var modelBefore = new ModelProto();
        if (header.HasIrVersion) modelBefore.IrVersion = header.IrVersion;
        if (header.HasProducerName) modelBefore.ProducerName = header.ProducerName;
        if (header.HasProducerVersion) modelBefore.ProducerVersion = header.ProducerVersion;
        if (header.HasDomain) modelBefore.Domain = header.Domain;
        if (header.HasModelVersion) modelBefore.ModelVersion = header.ModelVersion;
        if (header.HasDocString) modelBefore.DocString = header.DocString;
        var modelAfter = header; // opset_import, metadata_props, training_info, functions, configuration, unknown
        modelAfter.ClearIrVersion(); modelAfter.ClearProducerName(); modelAfter.ClearProducerVersion();
        modelAfter.ClearDomain(); modelAfter.ClearModelVersion(); modelAfter.ClearDocString();
        modelAfter.Graph = null;

        var graph = model.Graph;
        var graphHeader = ProtoConverter.GraphHeader(graph);
        var before = new Part(measureOnly);
        foreach (var node in graph.Nodes) before.Field(GraphNodeTag, converter.ToProto(node));
        if (graphHeader.HasName) before.Fields(new GraphProto { Name = graphHeader.Name });
        before.Finish();
        var initializers = new List<Initializer>(graph.Initializers.Count);
        long initializerBytes = 0;
        foreach (var v in graph.Initializers)
        {
            var init = PlanInitializer(v, placement(v));
            initializers.Add(init);
            initializerBytes += 1 + LengthSize(init.Size) + init.Size;
        }
        var after = new Part(measureOnly);
        if (graphHeader.HasDocString) after.Fields(new GraphProto { DocString = graphHeader.DocString });
        for (int i = 0; i < graph.Inputs.Count; i++) after.Field(GraphInputTag, ProtoConverter.ValueInfo(graph.Inputs[i], graph.InputDecls[i]));
        for (int i = 0; i < graph.Outputs.Count; i++) after.Field(GraphOutputTag, ProtoConverter.ValueInfo(graph.Outputs[i], graph.OutputDecls[i]));
        foreach (var v in graph.ValueInfos) after.Field(GraphValueInfoTag, ProtoConverter.ValueInfo(v, v.InfoEntry));
        graphHeader.ClearName();
        graphHeader.ClearDocString();
        after.Fields(graphHeader); // quantization_annotation, sparse_initializer, metadata_props, unknown
        after.Finish();
        return new WritePlan(modelBefore, modelAfter, before, initializers, after, before.Size + initializerBytes + after.Size);
    }

    private static Initializer PlanInitializer(Value v, TensorProtoPlacement placement)
    {
        var tensor = v.ConstValue!;
        if (placement.IsExternal)
        {
            var proto = ProtoConverter.External(v.Name, tensor, placement.Location!, placement.Offset);
            return new Initializer(proto, null, null, proto.CalculateSize());
        }
        // As read (the bytes are in memory already), or STRING: the converter's own message.
        if (tensor is ProtoTensor { Source: var source } && source.Name == v.Name || tensor.DataType == TensorDataType.String)
        {
            var proto = ProtoConverter.Embedded(v.Name, tensor);
            return new Initializer(proto, null, null, proto.CalculateSize());
        }
        // Header fields below raw_data (9) first, the ones above it after the streamed data.
        var header = ProtoConverter.Header(v.Name, tensor);
        var first = new TensorProto { Name = header.Name };
        first.Dims.Add(header.Dims);
        if (header.HasDataType) first.DataType = header.DataType;
        if (header.Segment is not null) first.Segment = header.Segment;
        var rest = header.Clone();
        rest.Dims.Clear();
        rest.ClearDataType();
        rest.Segment = null;
        rest.ClearName();
        long size = header.CalculateSize() + 1 + LengthSize(tensor.ByteLength) + tensor.ByteLength;
        return new Initializer(first, tensor, rest, size);
    }

    // Sizes may pass 2 GB here (Measure is how a save finds out); Write refuses them.
    private static int LengthSize(long length) => CodedOutputStream.ComputeRawVarint64Size((ulong)length);

    /// <summary>A run of fields serialized into memory, or (when measuring) only counted.</summary>
    private sealed class Part
    {
        private readonly MemoryStream? _buffer;
        private readonly CodedOutputStream? _coded;
        private long _size;

        public Part(bool measureOnly)
        {
            if (measureOnly) return;
            _buffer = new MemoryStream();
            _coded = new CodedOutputStream(_buffer, leaveOpen: true);
        }

        public byte[] Bytes { get; private set; } = [];
        public long Size => _size;

        /// <summary>One message-typed field: tag, length, message.</summary>
        public void Field(uint tag, IMessage message)
        {
            if (_coded is null)
            {
                int n = message.CalculateSize();
                _size += 1 + LengthSize(n) + n;
                return;
            }
            _coded.WriteRawTag((byte)tag);
            _coded.WriteMessage(message);
        }

        /// <summary>The fields a message has set, as they appear inside the enclosing message.</summary>
        public void Fields(IMessage message)
        {
            if (_coded is null) _size += message.CalculateSize();
            else message.WriteTo(_coded);
        }

        public void Finish()
        {
            if (_coded is null) return;
            _coded.Flush();
            Bytes = _buffer!.ToArray();
            _size = Bytes.LongLength;
            _buffer.Dispose();
        }
    }

    /// <summary>What <see cref="ProtoConverter.Embedded"/> returns, but with raw_data that has only a
    /// length: enough for CalculateSize, never read.</summary>
    private static TensorProto SizeOnlyEmbedded(string name, Tensor tensor)
    {
        if (tensor is ProtoTensor { Source: var source } && source.Name == name || tensor.DataType == TensorDataType.String)
            return ProtoConverter.Embedded(name, tensor);
        if (tensor.ByteLength > Array.MaxLength) throw new TensorTooLargeException();
        var proto = ProtoConverter.Header(name, tensor);
        proto.RawData = UnsafeByteOperations.UnsafeWrap(new LengthOnly((int)tensor.ByteLength).Memory);
        return proto;
    }

    private sealed class TensorTooLargeException : Exception;

    /// <summary>Memory of a given length with no storage behind it.</summary>
    private sealed class LengthOnly(int length) : MemoryManager<byte>
    {
        public override Memory<byte> Memory => CreateMemory(length);
        public override Span<byte> GetSpan() => throw new InvalidOperationException("a size-only placeholder has no bytes");
        public override MemoryHandle Pin(int elementIndex = 0) => throw new InvalidOperationException("a size-only placeholder has no bytes");
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }

    /// <summary>Copies a tensor's data to the stream: an unchanged external tensor inside the kernel when
    /// it can, otherwise by reading its file (not its memory map, so its pages do not count against this
    /// process); other tensors in chunks.</summary>
    private static void CopyData(Tensor tensor, Stream output)
    {
        if (tensor is MappedTensor { File.Handle: { } handle } mapped)
        {
            if (output is FileStream file && KernelCopy.TryAppend(handle, mapped.Offset, file, tensor.ByteLength)) return;
            byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkBytes);
            try
            {
                for (long done = 0; done < tensor.ByteLength;)
                {
                    int n = RandomAccess.Read(handle, chunk.AsSpan(0, (int)Math.Min(ChunkBytes, tensor.ByteLength - done)), mapped.Offset + done);
                    if (n <= 0) throw new IOException($"{mapped.File.FullPath} ended while reading tensor data");
                    output.Write(chunk, 0, n);
                    done += n;
                }
            }
            finally { ArrayPool<byte>.Shared.Return(chunk); }
            return;
        }
        tensor.CopyTo(output);
    }
}
