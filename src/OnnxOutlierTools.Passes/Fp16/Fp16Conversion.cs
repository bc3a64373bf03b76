using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Passes.Fp16;

/// <summary>Options of <see cref="Fp16Conversion"/>.</summary>
public sealed record Fp16Options
{
    /// <summary>Keep float32 graph inputs and outputs (Casts at the edges), so callers feed and read what they
    /// did before; false converts them to float16 too (past/present caches included).</summary>
    public bool KeepIoTypes { get; init; } = true;

    /// <summary>Op types kept in float32 (their float inputs cast up, outputs kept float32); default <see cref="Fp16Conversion.DefaultKeepFloat32"/>.</summary>
    public IReadOnlySet<string> KeepFloat32 { get; init; } = Fp16Conversion.DefaultKeepFloat32;
}

/// <summary>
/// Converts a model's float32 computation to float16: float32 initializers (streamed, saturated to +-65504),
/// Constant and ConstantOfShape values, Cast targets and declared value types become float16, except where
/// precision is critical. Kept in float32 (<see cref="DefaultKeepFloat32"/>): the reductions of decomposed norms
/// (Pow, ReduceMean, ReduceSumSquare, ReduceL2: x^2 of a massive activation overflows float16 above 256), Softmax
/// and LogSoftmax (their inputs, the attention scores), and the in-graph rotary angle computation (Range, Cos, Sin:
/// positions above 2048 are not integers in float16); from a kept op, float32 also flows through the element-wise
/// ops that read only kept values and constants (the norm's Add epsilon, Sqrt, Reciprocal), so a decomposed RMSNorm's
/// statistic is float32 end to end and only its result is cast to float16. Casts go in wherever a value crosses
/// between the two (one per value and direction). Ops ORT's CPU provider has no float16 kernel for are left to
/// ORT, which runs them in float32 between Casts it inserts itself (its InsertCastTransformer); the fused norms,
/// MatMul, GroupQueryAttention, MultiHeadAttention and RotaryEmbedding take float16 directly.
/// Refused: quantized graphs (QuantizeLinear, DequantizeLinear, the integer MatMuls: convert before
/// quantizing), models already without float32 computation, nested graphs holding float32 values.
/// </summary>
public sealed class Fp16Conversion : GraphPass
{
    public const string ConvertedInitializers = "converted-initializers";
    public const string ConvertedValues = "converted-values";
    public const string KeptFloat32Nodes = "kept-float32-nodes";
    public const string InsertedCasts = "inserted-casts";
    public const string SaturatedElements = "saturated-elements";

    /// <summary>Model metadata the conversion writes (and refuses to convert again).</summary>
    public const string MetadataKey = "onnx_outliers.fp16";

    public static readonly IReadOnlySet<string> DefaultKeepFloat32 = new HashSet<string>(StringComparer.Ordinal)
    {
        "Pow", "ReduceMean", "ReduceSumSquare", "ReduceL2", "Softmax", "LogSoftmax", "Range", "Cos", "Sin",
    };

    // Float32 flows on from a kept op through these when every float input is kept or constant.
    private static readonly HashSet<string> FlowOps = ["Add", "Sub", "Mul", "Div", "Sqrt", "Reciprocal", "Neg", "Abs", "Max", "Min", "Unsqueeze", "Reshape", "Expand", "Identity"];

    private static readonly HashSet<string> QuantizedOps =
    [
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv",
        "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention", "QOrderedMatMul",
    ];

    public Fp16Conversion(Fp16Options? options = null)
        : base("fp16-conversion", GraphScope.MainGraphOnly, [ConvertedInitializers, ConvertedValues, KeptFloat32Nodes, InsertedCasts, SaturatedElements])
    {
        Options = options ?? new Fp16Options();
    }

    public Fp16Options Options { get; }

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (graph.Nodes.FirstOrDefault(n => QuantizedOps.Contains(n.OpType)) is { } quantized)
            throw new InvalidOperationException($"the model is quantized ({quantized.OpType} node '{quantized.Name}'): convert the float model to fp16, then quantize");
        if (graph.Nodes.SelectMany(n => n.Subgraphs).Any())
            throw new InvalidOperationException("nested graphs (If, Loop, Scan, BeamSearch) are not converted; the model has some");
        if (context.Model.Metadata.Any(m => m.Key == MetadataKey))
            throw new InvalidOperationException("the model was converted to fp16 already (metadata " + MetadataKey + ")");
        var types = ValueTypes.Infer(graph);
        bool IsFloat(Value? v) => v is not null && types.TryGetValue(v, out var t) && t == TensorDataType.Float;
        if (!graph.Initializers.Any(IsFloat) && !graph.Inputs.Any(IsFloat))
            throw new InvalidOperationException("the model has no float32 weights or inputs to convert");

        var kept = KeptNodes(graph, IsFloat);
        recorder.Count(KeptFloat32Nodes, kept.Count);

        // Which float32 values become float16: made by a node not kept, or initializers/inputs read by some node not kept.
        var half = new HashSet<Value>();
        foreach (var node in graph.Nodes)
            if (!kept.Contains(node))
                foreach (var v in node.Outputs)
                    if (IsFloat(v)) half.Add(v!);
        foreach (var init in graph.Initializers)
            if (IsFloat(init) && !init.IsGraphInput && init.Consumers.Any(n => !kept.Contains(n))) half.Add(init);
        if (!Options.KeepIoTypes)
            foreach (var input in graph.Inputs)
                if (IsFloat(input)) half.Add(input);

        var editor = context.Model.Edit(graph, new NodeOrigin(Name));
        var casts = new Dictionary<(Value, bool), Value>();

        // Initializers: every float32 one that a float16 reader takes is converted (a kept reader gets a Cast back up).
        foreach (var init in graph.Initializers.ToList())
        {
            if (!half.Contains(init)) continue;
            var tensor = init.ConstValue!;
            long saturated = HalfTensor.CountOutOfRange(tensor);
            if (saturated > 0) recorder.Count(SaturatedElements, (int)Math.Min(int.MaxValue, saturated));
            graph.SetInitializerData(init, HalfTensor.From(tensor));
            if (init.Type is not null) init.SetTensorType(TensorDataType.Float16, init.Shape);
            recorder.Count(ConvertedInitializers);
        }

        foreach (var node in graph.Nodes.ToList())
        {
            bool nodeHalf = !kept.Contains(node);
            if (nodeHalf) RetypeAttributes(node);
            for (int i = 0; i < node.Inputs.Count; i++)
            {
                var input = node.Inputs[i];
                if (!IsFloat(input)) continue;
                bool inputHalf = half.Contains(input!);
                if (inputHalf == nodeHalf) continue;
                node.ReplaceInput(i, Cast(input!, toHalf: nodeHalf, before: node));
            }
            foreach (var output in node.Outputs)
            {
                if (output is null || !half.Contains(output)) continue;
                if (output.Type is not null) output.SetTensorType(TensorDataType.Float16, output.Shape);
                recorder.Count(ConvertedValues);
            }
        }

        // Graph outputs: a float16 value that must stay float32 gets a Cast that takes over its name.
        for (int i = 0; i < graph.Outputs.Count; i++)
        {
            var output = graph.Outputs[i];
            if (!half.Contains(output) || !Options.KeepIoTypes || output.IsGraphInput || output.IsInitializer) continue;
            string name = output.Name;
            var shape = output.Shape;
            output.Name = context.Names.NewValueName(name + "_fp16");
            output.SetTensorType(TensorDataType.Float16, shape);
            var cast = editor.AddNode("Cast", [output], [Attr.Int("to", (long)TensorDataType.Float)], name: $"{name}_to_fp32", outputs: [name]);
            var restored = cast.Outputs[0]!;
            restored.Name = name; // the graph output keeps the name callers know
            graph.SetOutput(i, restored);
            restored.SetTensorType(TensorDataType.Float, shape);
            recorder.Count(InsertedCasts);
        }
        if (!Options.KeepIoTypes)
            foreach (var v in graph.Inputs.Concat(graph.Outputs))
                if (half.Contains(v)) v.SetTensorType(TensorDataType.Float16, v.Shape);
        graph.TopologicalSort();
        context.Model.Metadata.Add(new(MetadataKey, Options.KeepIoTypes ? "float16 compute, float32 inputs and outputs" : "float16 compute, inputs and outputs"));
        recorder.MarkChanged();

        Value Cast(Value value, bool toHalf, Node before)
        {
            if (casts.TryGetValue((value, toHalf), out var existing)) return existing;
            var target = toHalf ? TensorDataType.Float16 : TensorDataType.Float;
            var output = editor.InsertingBefore(before).AddNode("Cast", [value], [Attr.Int("to", (long)target)],
                name: $"{value.Name}_to_{(toHalf ? "fp16" : "fp32")}").Outputs[0]!;
            output.SetTensorType(target, value.Shape);
            casts[(value, toHalf)] = output;
            recorder.Count(InsertedCasts);
            return output;
        }
    }

    private HashSet<Node> KeptNodes(Graph graph, Func<Value?, bool> isFloat)
    {
        var kept = new HashSet<Node>();
        var fp32 = new HashSet<Value>();
        foreach (var node in graph.Nodes) // topological: producers first
        {
            var floatInputs = node.Inputs.Where(isFloat).ToArray();
            bool keep = node.IsDefaultDomain && Options.KeepFloat32.Contains(node.OpType)
                || node.IsDefaultDomain && FlowOps.Contains(node.OpType) && floatInputs.Any(v => fp32.Contains(v!))
                   && floatInputs.All(v => fp32.Contains(v!) || v!.IsInitializer || v.Producer?.OpType == "Constant");
            if (!keep) continue;
            kept.Add(node);
            foreach (var o in node.Outputs) if (isFloat(o)) fp32.Add(o!);
        }
        // Backwards: what only feeds float32 islands is computed in float32 too (Range's bounds from Cast(int64),
        // a constant only a kept op reads), so positions and constants are not rounded to float16 on the way.
        foreach (var node in graph.Nodes.Reverse())
        {
            if (kept.Contains(node) || !node.IsDefaultDomain || !(node.OpType is "Cast" or "Constant" or "ConstantOfShape" || FlowOps.Contains(node.OpType))) continue;
            var outputs = node.Outputs.Where(isFloat).ToArray();
            if (outputs.Length == 0 || outputs.Any(o => o!.IsGraphOutput || o.Consumers.Any(c => !kept.Contains(c)) || o.Uses.Count == 0)) continue;
            if (node.OpType is not ("Cast" or "Constant" or "ConstantOfShape") && node.Inputs.Where(isFloat).Any(v => !v!.IsInitializer && v.Producer is { } p && !kept.Contains(p))) continue;
            kept.Add(node);
        }
        return kept;
    }

    // A node computing in float16: its float32 constants and Cast targets become float16.
    private static void RetypeAttributes(Node node)
    {
        if (!node.IsDefaultDomain) return;
        switch (node.OpType)
        {
            case "Cast" when node.GetInt("to", 0) == (long)TensorDataType.Float:
                node.SetAttribute(Attr.Int("to", (long)TensorDataType.Float16));
                break;
            case "Constant" or "ConstantOfShape" when node.GetAttribute("value") is { } value && value.AsTensor() is { DataType: TensorDataType.Float } tensor:
                node.SetAttribute(Attr.FromTensor("value", HalfTensor.From(tensor).ToArrayTensor()));
                break;
            case "Constant" when node.GetAttribute("value_floats") is { } list:
                node.RemoveAttribute("value_floats");
                var halves = list.AsFloats().Select(f => (Half)Math.Clamp(f, -HalfTensor.Max, HalfTensor.Max)).ToArray();
                node.SetAttribute(Attr.FromTensor("value", new ArrayTensor(TensorDataType.Float16, [halves.Length],
                    System.Runtime.InteropServices.MemoryMarshal.AsBytes(halves.AsSpan()).ToArray())));
                break;
            case "Constant" when node.GetAttribute("value_float") is { } scalar:
                node.RemoveAttribute("value_float");
                node.SetAttribute(Attr.FromTensor("value", new ArrayTensor(TensorDataType.Float16, [], BitConverter.GetBytes((Half)Math.Clamp(scalar.AsFloat(), -HalfTensor.Max, HalfTensor.Max)))));
                break;
        }
    }
}
