using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Passes.Fp16;

/// <summary>The element type of every value of a graph, from what the file declares, else from the op that
/// makes it: Cast's <c>to</c>, Constant's tensor, the fixed output types of shape, index and comparison ops,
/// and otherwise the type of the op's data input (the first, or Where's second). Exports declare graph inputs
/// and outputs but often not the intermediates; this is all the fp16 conversion needs to know (which values
/// are float32), not ONNX's full type inference.</summary>
internal static class ValueTypes
{
    private static readonly HashSet<string> Int64Outputs = ["Shape", "Size", "NonZero", "ArgMax", "ArgMin"];
    private static readonly HashSet<string> BoolOutputs = ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"];

    public static Dictionary<Value, TensorDataType> Infer(Graph graph)
    {
        var types = new Dictionary<Value, TensorDataType>();
        foreach (var v in graph.Inputs) Note(v);
        foreach (var v in graph.Initializers) Note(v);
        foreach (var node in graph.Nodes)
        {
            for (int i = 0; i < node.Outputs.Count; i++)
            {
                var output = node.Outputs[i];
                if (output is null) continue;
                if (output.ElementType is { } declared) { types[output] = declared; continue; }
                if (OutputType(node, i, types) is { } inferred) types[output] = inferred;
            }
        }
        return types;

        void Note(Value v)
        {
            if (v.ConstValue is { } t) types[v] = t.DataType;
            else if (v.ElementType is { } e) types[v] = e;
        }
    }

    private static TensorDataType? OutputType(Node node, int index, Dictionary<Value, TensorDataType> types)
    {
        if (node.IsDefaultDomain)
        {
            switch (node.OpType)
            {
                case "Cast": return (TensorDataType)node.GetInt("to", 0);
                case "CastLike": return TypeOf(node.Input(1));
                case "Constant":
                    if (node.GetAttribute("value") is { } value) return value.AsTensor().DataType;
                    return (node.GetAttribute("value_float") ?? node.GetAttribute("value_floats")) is not null ? TensorDataType.Float : TensorDataType.Int64;
                case "ConstantOfShape": return node.GetAttribute("value")?.AsTensor().DataType ?? TensorDataType.Float;
                case "TopK" when index == 1: return TensorDataType.Int64;
                case "Where": return TypeOf(node.Input(1));
                case "EyeLike" or "RandomNormalLike" or "RandomUniformLike" when node.GetAttribute("dtype") is { } dtype: return (TensorDataType)dtype.AsInt();
                case "DynamicQuantizeLinear": return index == 0 ? TensorDataType.UInt8 : index == 1 ? TensorDataType.Float : TensorDataType.UInt8;
            }
            if (Int64Outputs.Contains(node.OpType)) return TensorDataType.Int64;
            if (BoolOutputs.Contains(node.OpType)) return TensorDataType.Bool;
        }
        // Ops whose outputs follow their first input (element-wise math, data movement, MatMul, the norms,
        // com.microsoft attention and rotary ops, MatMulNBits's A), and only then any float input.
        return TypeOf(node.Inputs.FirstOrDefault(v => v is not null));

        TensorDataType? TypeOf(Value? v) => v is not null && types.TryGetValue(v, out var t) ? t : null;
    }
}
