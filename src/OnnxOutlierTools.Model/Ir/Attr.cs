using System.Text;
using Onnx.Protobuf;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

/// <summary>A node attribute. Graph-valued attributes (If/Loop/Scan bodies, BeamSearch's decoder)
/// hold IR graphs. The plain scalar and list kinds (INT, FLOAT, STRING, INTS, FLOATS with a name, a type
/// and nothing else, nearly all attributes) are held as values, about 60 bytes instead of a ~400-byte
/// AttributeProto; every other form keeps its protobuf, which round-trips unchanged.</summary>
public sealed class Attr
{
    private readonly AttributeProto? _proto; // null for a plain value, rebuilt (identically) on demand
    private readonly string _name = "";
    private readonly AttributeProto.Types.AttributeType _type;
    private readonly long _int;
    private readonly float _float;
    private readonly object? _value; // STRING: ByteString; INTS: long[]; FLOATS: float[]

    internal Attr(AttributeProto proto) => _proto = proto;

    internal Attr(AttributeProto proto, IReadOnlyList<Graph> graphs)
    {
        _proto = proto;
        Graphs = graphs;
    }

    private Attr(string name, AttributeProto.Types.AttributeType type, long i = 0, float f = 0, object? value = null)
    {
        _name = name;
        _type = type;
        _int = i;
        _float = f;
        _value = value;
    }

    /// <summary>An attribute read from a file: a plain value when its protobuf is exactly what
    /// <see cref="Proto"/> would rebuild from that value, otherwise the protobuf itself.</summary>
    internal static Attr FromFile(AttributeProto ap)
    {
        if (!ap.HasName || !ap.HasType) return new Attr(ap);
        Attr? plain = ap.Type switch
        {
            AttributeProto.Types.AttributeType.Int when ap.HasI => new Attr(ap.Name, ap.Type, i: ap.I),
            AttributeProto.Types.AttributeType.Float when ap.HasF => new Attr(ap.Name, ap.Type, f: ap.F),
            AttributeProto.Types.AttributeType.String when ap.HasS => new Attr(ap.Name, ap.Type, value: ap.S),
            AttributeProto.Types.AttributeType.Ints => new Attr(ap.Name, ap.Type, value: ap.Ints.ToArray()),
            AttributeProto.Types.AttributeType.Floats => new Attr(ap.Name, ap.Type, value: ap.Floats.ToArray()),
            _ => null,
        };
        return plain is not null && plain.Proto.Equals(ap) ? plain : new Attr(ap);
    }

    /// <summary>The attribute as protobuf, without its graph payload (g / graphs are held as IR in
    /// <see cref="Graphs"/>). A plain value gets a new message each time.</summary>
    internal AttributeProto Proto => _proto ?? Build();

    private AttributeProto Build()
    {
        var p = new AttributeProto { Name = _name, Type = _type };
        switch (_type)
        {
            case AttributeProto.Types.AttributeType.Int: p.I = _int; break;
            case AttributeProto.Types.AttributeType.Float: p.F = _float; break;
            case AttributeProto.Types.AttributeType.String: p.S = (Google.Protobuf.ByteString)_value!; break;
            case AttributeProto.Types.AttributeType.Ints: p.Ints.Add((long[])_value!); break;
            case AttributeProto.Types.AttributeType.Floats: p.Floats.Add((float[])_value!); break;
        }
        return p;
    }

    public string Name => _proto?.Name ?? _name;
    public AttributeProto.Types.AttributeType Type => _proto?.Type ?? _type;

    /// <summary>Subgraphs of a GRAPH (one) or GRAPHS attribute; empty otherwise.</summary>
    public IReadOnlyList<Graph> Graphs { get; } = [];

    /// <summary>A reference to an attribute of the enclosing function (ref_attr_name).</summary>
    public string? RefAttrName => _proto is { HasRefAttrName: true } p ? p.RefAttrName : null;

    public long AsInt() => Type == AttributeProto.Types.AttributeType.Int ? _proto?.I ?? _int : throw Mismatch("INT");
    public float AsFloat() => Type == AttributeProto.Types.AttributeType.Float ? _proto?.F ?? _float : throw Mismatch("FLOAT");
    public string AsString() => Type == AttributeProto.Types.AttributeType.String
        ? Encoding.UTF8.GetString((_proto?.S ?? (Google.Protobuf.ByteString)_value!).Span) : throw Mismatch("STRING");
    public IReadOnlyList<long> AsInts() => Type == AttributeProto.Types.AttributeType.Ints
        ? (IReadOnlyList<long>?)_proto?.Ints ?? Array.AsReadOnly((long[])_value!) : throw Mismatch("INTS");
    public IReadOnlyList<float> AsFloats() => Type == AttributeProto.Types.AttributeType.Floats
        ? (IReadOnlyList<float>?)_proto?.Floats ?? Array.AsReadOnly((float[])_value!) : throw Mismatch("FLOATS");
    public Tensor AsTensor() => Type == AttributeProto.Types.AttributeType.Tensor ? new ProtoTensor(Proto.T) : throw Mismatch("TENSOR");

    public static Attr Int(string name, long value) => new(name, AttributeProto.Types.AttributeType.Int, i: value);
    public static Attr Float(string name, float value) => new(name, AttributeProto.Types.AttributeType.Float, f: value);
    public static Attr String(string name, string value) =>
        new(name, AttributeProto.Types.AttributeType.String, value: Google.Protobuf.ByteString.CopyFromUtf8(value));
    public static Attr Ints(string name, params long[] values) => new(name, AttributeProto.Types.AttributeType.Ints, value: values.ToArray());
    public static Attr Floats(string name, params float[] values) => new(name, AttributeProto.Types.AttributeType.Floats, value: values.ToArray());
    /// <summary>A TENSOR attribute (e.g. a Constant's value); the tensor is embedded.</summary>
    public static Attr FromTensor(string name, Tensor tensor)
    {
        var t = new TensorProto { DataType = (int)tensor.DataType, RawData = Google.Protobuf.ByteString.CopyFrom(tensor.Bytes) };
        t.Dims.Add(tensor.Dims);
        return new Attr(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = t });
    }

    private InvalidOperationException Mismatch(string wanted) =>
        new($"attribute '{Name}' is {Type.ToString().ToUpperInvariant()}, not {wanted}");

    public override string ToString() => $"{Name}:{Type}";
}
