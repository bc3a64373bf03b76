using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.IO;

/// <summary>IR -> protobuf. Everything the IR does not model comes back from the kept protobuf
/// "extras", so a model that was not edited converts back to the protobuf it was read from.
/// <paramref name="writeTensor"/> decides how each initializer's data is stored.</summary>
public sealed class ProtoConverter(Func<Value, TensorProto> writeTensor)
{
    public ModelProto ToProto(Model model)
    {
        var proto = ModelHeader(model);
        proto.Graph = ToProto(model.Graph);
        return proto;
    }

    /// <summary>The model's protobuf without its graph (what <see cref="ModelSerializer"/> writes around it).</summary>
    internal static ModelProto ModelHeader(Model model)
    {
        var proto = model.Extras.Clone();
        proto.IrVersion = model.IrVersion;
        SetString(model.ProducerName, proto.HasProducerName, proto.ProducerName, v => proto.ProducerName = v, proto.ClearProducerName);
        SetString(model.ProducerVersion, proto.HasProducerVersion, proto.ProducerVersion, v => proto.ProducerVersion = v, proto.ClearProducerVersion);

        // Opset imports and metadata: keep the original entries (and their field presence) when unchanged.
        var opsets = model.OpsetImports.Select(o => (o.Domain, o.Version)).ToList();
        var original = proto.OpsetImport.Select(o => (o.HasDomain ? o.Domain : "", o.Version)).ToList();
        if (!opsets.SequenceEqual(original))
        {
            proto.OpsetImport.Clear();
            foreach (var o in model.OpsetImports) proto.OpsetImport.Add(new OperatorSetIdProto { Domain = o.Domain, Version = o.Version });
        }
        var metadata = model.Metadata.Select(m => (m.Key, m.Value)).ToList();
        if (!metadata.SequenceEqual(proto.MetadataProps.Select(m => (m.Key, m.Value))))
        {
            proto.MetadataProps.Clear();
            foreach (var m in model.Metadata) proto.MetadataProps.Add(new StringStringEntryProto { Key = m.Key, Value = m.Value });
        }
        return proto;
    }

    public GraphProto ToProto(Graph graph)
    {
        var proto = GraphHeader(graph);
        for (int i = 0; i < graph.Inputs.Count; i++) proto.Input.Add(ValueInfo(graph.Inputs[i], graph.InputDecls[i]));
        foreach (var v in graph.Initializers) proto.Initializer.Add(writeTensor(v));
        foreach (var node in graph.Nodes) proto.Node.Add(ToProto(node));
        for (int i = 0; i < graph.Outputs.Count; i++) proto.Output.Add(ValueInfo(graph.Outputs[i], graph.OutputDecls[i]));
        foreach (var v in graph.ValueInfos) proto.ValueInfo.Add(ValueInfo(v, v.InfoEntry));
        return proto;
    }

    /// <summary>The graph's protobuf without nodes, initializers and declarations: name and the kept extras.</summary>
    internal static GraphProto GraphHeader(Graph graph)
    {
        var proto = graph.Extras.Clone();
        if (graph.Name != (proto.HasName ? proto.Name : "")) proto.Name = graph.Name;
        return proto;
    }

    internal NodeProto ToProto(Node node)
    {
        var proto = node.CopyExtras();
        if (node.Name != (proto.HasName ? proto.Name : "")) proto.Name = node.Name;
        if (node.OpType != proto.OpType) proto.OpType = node.OpType;
        if (node.Domain != (proto.HasDomain ? proto.Domain : "")) proto.Domain = node.Domain;
        foreach (var input in node.Inputs) proto.Input.Add(input?.Name ?? "");
        foreach (var output in node.Outputs) proto.Output.Add(output?.Name ?? "");
        foreach (var attr in node.Attributes)
        {
            if (attr.Graphs.Count == 0)
            {
                proto.Attribute.Add(attr.Proto);
                continue;
            }
            var ap = attr.Proto.Clone();
            if (attr.Type == AttributeProto.Types.AttributeType.Graph) ap.G = ToProto(attr.Graphs[0]);
            else foreach (var g in attr.Graphs) ap.Graphs.Add(ToProto(g));
            proto.Attribute.Add(ap);
        }
        return proto;
    }

    /// <summary>A declaration: as read (with the current name) unless the type was edited since.</summary>
    internal static ValueInfoProto ValueInfo(Value value, ValueInfoProto? declared)
    {
        var proto = declared?.Clone() ?? new ValueInfoProto();
        proto.Name = value.Name;
        if (declared is null || value.TypeEdited)
        {
            if (value.Type is not null) proto.Type = value.Type; else proto.Type = null;
        }
        return proto;
    }

    private static void SetString(string? value, bool had, string old, Action<string> set, Action clear)
    {
        if (value is null) { if (had) clear(); }
        else if (!had || old != value) set(value);
    }

    /// <summary>A TensorProto carrying the tensor's data embedded. An untouched embedded tensor is
    /// returned as read (typed fields stay typed fields); others get raw_data.</summary>
    public static TensorProto Embedded(string name, Tensor tensor)
    {
        if (tensor is ProtoTensor { Source: var source } && source.Name == name) return source;
        var proto = Header(name, tensor);
        if (tensor is ProtoTensor pt && tensor.DataType == TensorDataType.String)
        {
            proto.StringData.Add(pt.Strings);
            return proto;
        }
        proto.RawData = ByteString.CopyFrom(tensor.Bytes);
        return proto;
    }

    /// <summary>A TensorProto that points at external data.</summary>
    public static TensorProto External(string name, Tensor tensor, string location, long offset)
    {
        var proto = Header(name, tensor);
        proto.DataLocation = TensorProto.Types.DataLocation.External;
        proto.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        proto.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        proto.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = tensor.ByteLength.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        return proto;
    }

    /// <summary>Name, type, shape and the source's extras (doc_string, metadata_props), no data.</summary>
    public static TensorProto Header(string name, Tensor tensor)
    {
        TensorProto proto;
        if (tensor.Source is { } source)
        {
            proto = source.Clone();
            proto.FloatData.Clear(); proto.Int32Data.Clear(); proto.StringData.Clear(); proto.Int64Data.Clear();
            proto.DoubleData.Clear(); proto.Uint64Data.Clear(); proto.ExternalData.Clear();
            proto.ClearRawData(); proto.ClearDataLocation();
            proto.Dims.Clear();
        }
        else proto = new TensorProto();
        proto.Name = name;
        proto.DataType = (int)tensor.DataType;
        proto.Dims.Add(tensor.Dims);
        return proto;
    }
}
