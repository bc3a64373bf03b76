using System.Text;
using Onnx.Protobuf;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

/// <summary>A node attribute. Graph-valued attributes (If/Loop/Scan bodies, BeamSearch's decoder)
/// hold IR graphs; every other kind keeps its protobuf form, which round-trips unchanged.</summary>
public sealed class Attr
{
    internal Attr(AttributeProto proto) => Proto = proto;

    internal Attr(AttributeProto proto, IReadOnlyList<Graph> graphs)
    {
        Proto = proto;
        Graphs = graphs;
    }

    /// <summary>The attribute without its graph payload (g / graphs are held as IR in <see cref="Graphs"/>).</summary>
    internal AttributeProto Proto { get; }

    public string Name => Proto.Name;
    public AttributeProto.Types.AttributeType Type => Proto.Type;

    /// <summary>Subgraphs of a GRAPH (one) or GRAPHS attribute; empty otherwise.</summary>
    public IReadOnlyList<Graph> Graphs { get; } = [];

    /// <summary>A reference to an attribute of the enclosing function (ref_attr_name).</summary>
    public string? RefAttrName => Proto.HasRefAttrName ? Proto.RefAttrName : null;

    public long AsInt() => Proto.Type == AttributeProto.Types.AttributeType.Int ? Proto.I : throw Mismatch("INT");
    public float AsFloat() => Proto.Type == AttributeProto.Types.AttributeType.Float ? Proto.F : throw Mismatch("FLOAT");
    public string AsString() => Proto.Type == AttributeProto.Types.AttributeType.String ? Encoding.UTF8.GetString(Proto.S.Span) : throw Mismatch("STRING");
    public IReadOnlyList<long> AsInts() => Proto.Type == AttributeProto.Types.AttributeType.Ints ? Proto.Ints : throw Mismatch("INTS");
    public IReadOnlyList<float> AsFloats() => Proto.Type == AttributeProto.Types.AttributeType.Floats ? Proto.Floats : throw Mismatch("FLOATS");
    public Tensor AsTensor() => Proto.Type == AttributeProto.Types.AttributeType.Tensor ? new ProtoTensor(Proto.T) : throw Mismatch("TENSOR");

    public static Attr Int(string name, long value) => new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value });
    public static Attr Float(string name, float value) => new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value });
    public static Attr String(string name, string value) => new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.String, S = Google.Protobuf.ByteString.CopyFromUtf8(value) });
    public static Attr Ints(string name, params long[] values)
    {
        var p = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        p.Ints.Add(values);
        return new Attr(p);
    }
    public static Attr Floats(string name, params float[] values)
    {
        var p = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Floats };
        p.Floats.Add(values);
        return new Attr(p);
    }
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
