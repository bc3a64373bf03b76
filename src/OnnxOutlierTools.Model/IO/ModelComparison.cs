using System.Collections;
using System.Globalization;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Onnx.Protobuf;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.IO;

/// <summary>The outcome of <see cref="ModelComparison.Compare"/>: equal, or where they first differ.</summary>
public sealed record ModelComparisonResult(bool AreEqual, string? Difference)
{
    public static ModelComparisonResult Equal { get; } = new(true, null);
    public override string ToString() => AreEqual ? "models are equal" : Difference!;
}

/// <summary>Semantic, lossless comparison of two models: metadata, opsets, graphs (nested ones too),
/// names, attributes, value_info and functions must be identical, and initializer data must have the
/// same bytes however it is stored (embedded raw_data or typed fields, external file, memory).
/// Both models are converted with a tensor writer that keeps each initializer's header (name, type,
/// dims, doc_string, metadata) but no data; the two protobufs are compared field by field, then the
/// initializer data pairwise in chunks, so models above 2 GB compare without a 2 GB buffer.</summary>
public static class ModelComparison
{
    private const int Chunk = 16 << 20;

    public static ModelComparisonResult Compare(Model expected, Model actual)
    {
        var (protoA, tensorsA) = Canonicalize(expected);
        var (protoB, tensorsB) = Canonicalize(actual);
        if (!protoA.Equals(protoB))
            return new ModelComparisonResult(false, FirstDifference(protoA, protoB, "model") ?? "the models differ (no field difference found)");
        // Equal protobufs list the same initializers in the same order.
        for (int i = 0; i < tensorsA.Count; i++)
        {
            string? data = DataDifference(tensorsA[i].ConstValue!, tensorsB[i].ConstValue!);
            if (data is not null)
                return new ModelComparisonResult(false, $"graph '{tensorsA[i].Graph.Name}' initializer '{tensorsA[i].Name}': {data}");
        }
        return ModelComparisonResult.Equal;
    }

    private static (ModelProto Proto, List<Value> Initializers) Canonicalize(Model model)
    {
        var initializers = new List<Value>();
        var converter = new ProtoConverter(v =>
        {
            initializers.Add(v);
            var header = ProtoConverter.Header(v.Name, v.ConstValue!);
            if (v.ConstValue is ProtoTensor { DataType: TensorDataType.String } strings) header.StringData.Add(strings.Strings);
            return header;
        });
        return (converter.ToProto(model), initializers);
    }

    private static string? DataDifference(Tensor a, Tensor b)
    {
        try
        {
            for (long offset = 0; offset < a.ByteLength; offset += Chunk)
            {
                int n = (int)Math.Min(Chunk, a.ByteLength - offset);
                ReadOnlySpan<byte> x = a.GetBytes(offset, n), y = b.GetBytes(offset, n);
                int same = x.CommonPrefixLength(y);
                if (same < n)
                    return string.Create(CultureInfo.InvariantCulture,
                        $"data differs at byte {offset + same} (0x{x[same]:x2} vs 0x{y[same]:x2}; {a.Storage} vs {b.Storage})");
            }
            return null;
        }
        catch (InvalidOperationException ex)
        {
            return $"data cannot be read: {ex.Message}";
        }
    }

    /// <summary>Walks two messages field by field (declaration order) and describes the first difference
    /// with a path such as <c>model.graph.node[12 Add 'add_3'].attribute[0 'axis'].i: 1 vs 2</c>.</summary>
    internal static string? FirstDifference(IMessage a, IMessage b, string path)
    {
        foreach (var field in a.Descriptor.Fields.InDeclarationOrder())
        {
            string here = $"{path}.{field.Name}";
            var accessor = field.Accessor;
            if (field.IsRepeated)
            {
                var la = (IList)accessor.GetValue(a);
                var lb = (IList)accessor.GetValue(b);
                int common = Math.Min(la.Count, lb.Count);
                for (int i = 0; i < common; i++)
                {
                    if (field.FieldType == FieldType.Message)
                    {
                        var ma = (IMessage)la[i]!;
                        if (ma.Equals(lb[i])) continue;
                        return FirstDifference(ma, (IMessage)lb[i]!, $"{here}[{i}{Label(ma)}]") ?? $"{here}[{i}] differs";
                    }
                    if (!Equals(la[i], lb[i])) return $"{here}[{i}]: {Format(la[i])} vs {Format(lb[i])}";
                }
                if (la.Count != lb.Count)
                {
                    var extra = la.Count > lb.Count ? la[common] : lb[common];
                    string what = extra is IMessage m ? $"first extra{Label(m)}" : $"first extra {Format(extra)}";
                    return $"{here}: {la.Count} vs {lb.Count} entries ({what})";
                }
                continue;
            }
            bool hasA = !field.HasPresence || accessor.HasValue(a);
            bool hasB = !field.HasPresence || accessor.HasValue(b);
            if (hasA != hasB) return $"{here}: {(hasA ? "set" : "absent")} vs {(hasB ? "set" : "absent")}";
            if (!hasA) continue;
            object? va = accessor.GetValue(a), vb = accessor.GetValue(b);
            if (field.FieldType == FieldType.Message)
            {
                if (va is null || vb is null)
                {
                    if (va is null && vb is null) continue;
                    return $"{here}: {(va is null ? "absent" : "set")} vs {(vb is null ? "absent" : "set")}";
                }
                if (!va.Equals(vb)) return FirstDifference((IMessage)va, (IMessage)vb, here) ?? $"{here} differs";
            }
            else if (va is ByteString ba && vb is ByteString bb)
            {
                if (ba.Equals(bb)) continue;
                int same = ba.Span.CommonPrefixLength(bb.Span);
                return $"{here}: {ba.Length} vs {bb.Length} bytes, first difference at byte {same}";
            }
            else if (!Equals(va, vb)) return $"{here}: {Format(va)} vs {Format(vb)}";
        }
        return a.Equals(b) ? null : $"{path}: unknown fields differ";
    }

    private static string Label(IMessage message)
    {
        string Get(string field) =>
            message.Descriptor.FindFieldByName(field) is { } f && f.Accessor.GetValue(message) is string s ? s : "";
        // The identifying field: name (nodes, tensors, values, attributes, functions), key (metadata), domain (opsets).
        string name = Get("name") is { Length: > 0 } n ? n : Get("key") is { Length: > 0 } k ? k : Get("domain");
        string op = message is NodeProto ? Get("op_type") : "";
        return (op.Length > 0 ? " " + op : "") + (name.Length > 0 ? $" '{name}'" : "");
    }

    private static string Format(object? value) => value switch
    {
        null => "null",
        string s => s.Length > 80 ? $"'{s[..80]}...'" : $"'{s}'",
        ByteString bytes => $"{bytes.Length} bytes",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "?",
    };
}
