using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Import;

/// <summary>Large synthetic graphs for memory and speed measurements: a valid chain of N shape-preserving
/// element-wise nodes over FLOAT[1,64], cycling through eight op types of which three carry an attribute
/// (Softmax axis, LeakyRelu alpha, Cast to), with short node and value names (about 25 bytes of protobuf
/// per node, like the 1M-node file of issue 6). Optionally one large initializer, for save/embed runs.</summary>
public static class SyntheticGraph
{
    private static readonly string[] OpCycle = ["Add", "Relu", "Mul", "Softmax", "Sigmoid", "LeakyRelu", "Identity", "Cast"];

    /// <summary>A model whose main graph has exactly <paramref name="nodes"/> nodes. With
    /// <paramref name="largeTensorBytes"/> &gt; 0 a FLOAT initializer of that size (rounded down to whole
    /// floats, generated on demand, never held in memory) is added and used by the first Add.</summary>
    public static Model Create(int nodes, long largeTensorBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(nodes);
        var graph = new Graph("synthetic");
        Value x = graph.AddInput("x", TensorDataType.Float, [new Dim(1), new Dim(64)]);
        Value bias = graph.AddInitializer("c", ArrayTensor.Create<float>(Enumerable.Range(0, 64).Select(i => i / 64f).ToArray(), 64));
        Value? big = null;
        if (largeTensorBytes >= 4)
        {
            long count = largeTensorBytes / 4;
            big = graph.AddInitializer("big", new GeneratedTensor(TensorDataType.Float, [count], Fill));
        }
        var editor = new GraphEditor(graph, new NameAuthority()) { ExactNames = true };
        Value previous = x;
        for (int i = 0; i < nodes; i++)
        {
            string op = OpCycle[i % OpCycle.Length];
            Value?[] inputs = op is "Add" or "Mul" ? [previous, bias] : [previous];
            Attr[] attributes = op switch
            {
                "Softmax" => [Attr.Int("axis", -1)],
                "LeakyRelu" => [Attr.Float("alpha", 0.1f)],
                "Cast" => [Attr.Int("to", (long)TensorDataType.Float)],
                _ => [],
            };
            previous = editor.AddNode(op, inputs, attributes, name: $"n{i}", outputs: [$"t{i}"]).Outputs[0]!;
        }
        if (big is not null)
        {
            // A Shape of the big tensor keeps it used (and the graph valid) without touching its data.
            var shape = editor.AddNode("Shape", [big], name: "big_shape", outputs: ["big_shape"]);
            graph.AddOutput(shape.Outputs[0]!);
            shape.Outputs[0]!.SetTensorType(TensorDataType.Int64, [new Dim(1)]); // an output: no value_info entry
        }
        graph.AddOutput(previous);
        previous.SetTensorType(TensorDataType.Float, [new Dim(1), new Dim(64)]);
        var model = new Model(graph, irVersion: 8) { ProducerName = "onnx-outliers synthetic-graph" };
        model.OpsetImports.Add(new OpsetId("", 17));
        return model;
    }

    // Deterministic, cheap, not constant (so a file system cannot store it sparse).
    private static void Fill(long byteOffset, Span<byte> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (byte)((byteOffset + i) * 2654435761L >> 13);
    }
}
