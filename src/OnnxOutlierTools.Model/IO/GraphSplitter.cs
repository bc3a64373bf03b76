using Google.Protobuf;
using Onnx.Protobuf;

namespace OnnxOutlierTools.IO;

/// <summary>Splits a serialized ModelProto into the model without its main graph's nodes (parsed as
/// usual) and the byte ranges of those nodes, which the reader then parses one at a time and converts
/// at once. So the whole protobuf tree of a large graph never exists next to the IR (the peak memory of
/// a load). Anything unusual (groups, the graph field twice, a malformed wire) reports false and the
/// caller parses the normal way, with the normal error messages.
/// The raw_data of the main graph's initializers is not copied either: each becomes a view into
/// <c>bytes</c> (a memory-mapped file when loading from a path), so an embedded 1 GB model needs no second
/// GB, and its data pages are read only when a tensor is.</summary>
internal static class GraphSplitter
{
    private const int ModelGraphField = 7;
    private const int GraphNodeField = 1;
    private const int GraphInitializerField = 5;
    private const int TensorRawDataField = 9;

    /// <summary>Google.Protobuf's default nesting limit, which <see cref="ParseNode"/> runs under.</summary>
    private const int NodeRecursionLimit = 100;

    public static bool TrySplit(ReadOnlyMemory<byte> memory, int recursionLimit, out ModelProto proto, out List<(int Start, int Length)> nodes)
    {
        proto = null!;
        nodes = [];
        var bytes = memory.Span;
        // A node parsed alone may nest 100 levels below model and graph; a stricter limit than that
        // is left to the whole-message parse, which enforces it.
        if (recursionLimit < NodeRecursionLimit + 2) return false;
        try
        {
            using var modelRest = new MemoryStream();
            int graphStart = -1, graphLength = 0;
            int pos = 0;
            while (pos < bytes.Length)
            {
                int fieldStart = pos;
                ulong tag = Varint(bytes, ref pos);
                int contentStart = Skip(bytes, ref pos, tag, bytes.Length, out int contentLength);
                if (tag >> 3 == ModelGraphField && (tag & 7) == 2)
                {
                    if (graphStart >= 0) return false; // two graph fields merge: leave that to the parser
                    graphStart = contentStart;
                    graphLength = contentLength;
                }
                else modelRest.Write(bytes[fieldStart..pos]);
            }
            if (graphStart < 0) return false;

            using var graphRest = new MemoryStream();
            var rawData = new List<(int Initializer, int Start, int Length)>();
            int initializers = 0;
            int end = graphStart + graphLength;
            pos = graphStart;
            while (pos < end)
            {
                int fieldStart = pos;
                ulong tag = Varint(bytes, ref pos);
                int contentStart = Skip(bytes, ref pos, tag, end, out int contentLength);
                if (tag >> 3 == GraphNodeField && (tag & 7) == 2) nodes.Add((contentStart, contentLength));
                else if (tag >> 3 == GraphInitializerField && (tag & 7) == 2)
                {
                    if (!WithoutRawData(bytes, fieldStart, contentStart, contentLength, graphRest, out var raw)) return false;
                    if (raw.Length > 0) rawData.Add((initializers, raw.Start, raw.Length));
                    initializers++;
                }
                else graphRest.Write(bytes[fieldStart..pos]);
            }
            if (pos != end) return false;

            proto = Parse(ModelProto.Parser, modelRest, recursionLimit);
            proto.Graph = Parse(GraphProto.Parser, graphRest, recursionLimit - 1);
            if (proto.Graph.Initializer.Count != initializers) return false;
            foreach (var (index, start, length) in rawData)
                proto.Graph.Initializer[index].RawData = UnsafeByteOperations.UnsafeWrap(memory.Slice(start, length));
            return true;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException) // whatever it is, the full parse reports it
        {
            return false;
        }
    }

    /// <summary>Writes an initializer field to <paramref name="output"/> without its raw_data, whose content
    /// range comes back in <paramref name="raw"/> (length 0: none). False for a tensor whose raw_data is not
    /// one plain field (repeated fields merge, which the parser should do).</summary>
    private static bool WithoutRawData(ReadOnlySpan<byte> bytes, int fieldStart, int contentStart, int contentLength, MemoryStream output,
        out (int Start, int Length) raw)
    {
        raw = (0, 0);
        int end = contentStart + contentLength;
        int rawField = -1, rawFieldEnd = -1;
        for (int pos = contentStart; pos < end;)
        {
            int start = pos;
            ulong tag = Varint(bytes, ref pos);
            int content = Skip(bytes, ref pos, tag, end, out int length);
            if (tag >> 3 != TensorRawDataField) continue;
            if ((tag & 7) != 2 || rawField >= 0) return false;
            (rawField, rawFieldEnd, raw) = (start, pos, (content, length));
        }
        // Small raw data is copied as the parser would (no view needed, and an empty one has no range).
        if (rawField < 0 || raw.Length < 64)
        {
            raw = (0, 0);
            output.Write(bytes[fieldStart..end]);
            return true;
        }
        var coded = new CodedOutputStream(output, leaveOpen: true);
        coded.WriteTag(GraphInitializerField, WireFormat.WireType.LengthDelimited);
        coded.WriteLength(contentLength - (rawFieldEnd - rawField));
        coded.Flush();
        output.Write(bytes[contentStart..rawField]);
        output.Write(bytes[rawFieldEnd..end]);
        return true;
    }

    /// <summary>One node of the main graph, under the parser's default nesting limit (100 levels); a
    /// deeper node throws, and the reader then falls back to the whole-message parse.</summary>
    public static NodeProto ParseNode(ReadOnlyMemory<byte> bytes, (int Start, int Length) range) =>
        NodeProto.Parser.ParseFrom(bytes.Span.Slice(range.Start, range.Length));

    private static T Parse<T>(MessageParser<T> parser, MemoryStream data, int recursionLimit) where T : IMessage<T>
    {
        data.Position = 0;
        using var input = CodedInputStream.CreateWithLimits(data, int.MaxValue, recursionLimit);
        return parser.ParseFrom(input);
    }

    private static ulong Varint(ReadOnlySpan<byte> b, ref int pos)
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte x = b[pos++];
            result |= (ulong)(x & 0x7F) << shift;
            if (x < 0x80) return result;
        }
        throw new FormatException("varint too long");
    }

    /// <summary>Skips the field whose tag was just read; returns where its content starts.</summary>
    private static int Skip(ReadOnlySpan<byte> b, ref int pos, ulong tag, int end, out int length)
    {
        if (tag >> 3 == 0) throw new FormatException("field number 0");
        int start;
        switch (tag & 7)
        {
            case 0: start = pos; Varint(b, ref pos); break;
            case 1: start = pos; pos += 8; break;
            case 5: start = pos; pos += 4; break;
            case 2:
                ulong n = Varint(b, ref pos);
                if (n > (ulong)(end - pos)) throw new FormatException("length past the end");
                start = pos;
                pos += (int)n;
                break;
            default: throw new FormatException("group or invalid wire type");
        }
        if (pos > end) throw new FormatException("field past the end");
        length = pos - start;
        return start;
    }
}
