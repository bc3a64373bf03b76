using Onnx.Protobuf;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Calibration;

/// <summary>A decoder that lives in a node attribute (the <c>decoder</c> graph of a com.microsoft BeamSearch,
/// GreedySearch or Sampling node) as a model of its own, so it can be probed and run: a graph output can only be fetched
/// from the main graph, and the search op would not run the decoder on calibration text anyway. Values the body reads
/// from the enclosing graph must be initializers there (they are copied in); anything else is refused.</summary>
public static class NestedDecoder
{
    public static Model Extract(Model model, Graph body)
    {
        if (body.ParentNode is null) throw new ArgumentException("the graph is the main graph, not a nested one", nameof(body));
        string where = $"{model.SourcePath}: {body.ParentNode.Describe()}";
        var converter = new ProtoConverter(v => ProtoConverter.Embedded(v.Name, v.ConstValue!));
        var graph = converter.ToProto(body);
        var defined = new HashSet<string>(StringComparer.Ordinal);
        foreach (var v in body.Inputs) defined.Add(v.Name);
        foreach (var v in body.Initializers) defined.Add(v.Name);
        foreach (var node in body.AllNodes()) foreach (var o in node.Outputs) if (o is not null) defined.Add(o.Name);
        foreach (var node in body.AllNodes())
            foreach (var input in node.Inputs)
            {
                if (input is null || input.Name.Length == 0 || !defined.Add(input.Name)) continue;
                if (input.Graph == body || input.Graph.ParentNode is not null && IsInside(input.Graph, body)) continue;
                if (input.ConstValue is null)
                    throw new CalibrationException($"{where}: the nested graph reads '{input.Name}' of the enclosing graph, which is not a constant; it cannot run on its own");
                graph.Initializer.Add(ProtoConverter.Embedded(input.Name, input.ConstValue));
            }
        var proto = new ModelProto { IrVersion = model.IrVersion, Graph = graph, ProducerName = model.ProducerName ?? "" };
        foreach (var opset in model.OpsetImports) proto.OpsetImport.Add(new OperatorSetIdProto { Domain = opset.Domain, Version = opset.Version });
        // The search node's own domain is imported; the body may use com.microsoft ops the file forgot to import (as
        // convert_generation's output does): import it when the body uses it.
        if (body.AllNodes().Any(n => n.Domain == "com.microsoft") && proto.OpsetImport.All(o => o.Domain != "com.microsoft"))
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        return ModelReader.FromProto(proto, model.SourcePath ?? "nested.onnx");
    }

    private static bool IsInside(Graph graph, Graph body)
    {
        for (var g = graph; g is not null; g = g.Parent) if (g == body) return true;
        return false;
    }
}
