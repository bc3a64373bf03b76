using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>What the quantizer did with one linear.</summary>
public sealed record Int4LinearOutcome(string Role, string Weight, long InFeatures, long OutFeatures, bool Quantized, string? Reason);

/// <summary>Rewrites the selected linears (<see cref="Int4Linears"/>) to int4, main graph only:
/// <para>MatMulNBits: <c>MatMul(X, W) [+ b]</c> or <c>Gemm(X, W, C)</c> becomes <c>MatMulNBits(X, B, scales[, zero_points])</c>
/// (com.microsoft, bits 4, K, N, block_size, accuracy_level); a separate bias Add stays as it is, a Gemm's C becomes an Add;
/// the output keeps its name. Scales are in the linear's compute type (after a Cast on the weight's path), FLOAT or FLOAT16.</para>
/// <para>Blocked DequantizeLinear (opset 21): the stored weight is replaced by <c>DequantizeLinear(q, scale[, zero_point],
/// axis = its input-channel axis, block_size)</c> in its own layout and type; the MatMul/Gemm (and any Transpose/Cast on the
/// weight's path) stay. The model's opset must already be 21 (<see cref="Int4Quantizer"/> upgrades it).</para>
/// The new tensors are lazy (<see cref="Int4Weight"/>): quantized when read, a tile at a time. Inserted nodes carry the
/// provenance pass <c>int4-quantize</c>, rule <c>matmul-nbits</c> or <c>dequantize-linear</c>.</summary>
public sealed class Int4QuantizePass : GraphPass
{
    public const string PassName = "int4-quantize";
    public const string NBitsRule = "matmul-nbits";
    public const string DequantizeRule = "dequantize-linear";

    private readonly ModelStructure _structure;
    private readonly List<Int4LinearOutcome> _outcomes = [];

    public Int4QuantizePass(ModelStructure structure, Int4Settings settings)
        : base(PassName, GraphScope.MainGraphOnly, [NBitsRule, DequantizeRule])
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(settings);
        if (structure.NestedIn is { } nested)
            throw new Int4QuantizationException($"the recognized blocks are in a nested graph ({nested}); int4 quantization edits the main graph only");
        _structure = structure;
        Settings = settings;
        Candidates = Int4Linears.Select(structure, settings.IncludeLmHead)
            .Select(c => c.Eligible && settings.OnlyWeights is { } only && !only.Contains(c.Linear.Weight.Name) ? c with { SkipReason = "not among the linears asked for" } : c)
            .ToList();
    }

    public Int4Settings Settings { get; }
    public IReadOnlyList<Int4Candidate> Candidates { get; }
    public IReadOnlyList<Int4LinearOutcome> Outcomes => _outcomes;

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (!ReferenceEquals(graph, _structure.Graph))
            throw new InvalidOperationException("the structure was recognized on another model (recognize the model the pass runs on)");
        if (Settings.Format == Int4Format.BlockedDequantize && (context.Model.OpsetVersion("") ?? 0) < Opset21Upgrade.Target)
            throw new InvalidOperationException("the blocked DequantizeLinear form needs default opset 21 (run Opset21Upgrade first)");
        _outcomes.Clear();
        string rule = Settings.Format == Int4Format.MatMulNBits ? NBitsRule : DequantizeRule;
        foreach (var candidate in Candidates)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            var linear = candidate.Linear;
            string? reason = candidate.SkipReason ?? (Settings.Format == Int4Format.MatMulNBits ? ToNBits(graph, context, linear) : ToDequantize(graph, context, linear));
            if (reason is not null) recorder.Skip(rule, reason, graph, linear.Weight.Name);
            else recorder.Count(rule);
            _outcomes.Add(new Int4LinearOutcome(candidate.Role, linear.Weight.Name, linear.InFeatures, linear.OutFeatures, reason is null, reason));
        }
        // The float weights (and Transposes/Casts on their way) that nothing reads any more.
        graph.RemoveDeadNodes();
    }

    private Int4Weight Weight(LinearRole linear, Tensor data, TensorDataType scaleType) =>
        new(linear.Weight.Name, data, linear.Layout == WeightLayout.InOut ? 0 : 1, Settings.BlockSize, Settings.Symmetric, scaleType);

    private string? ToNBits(Graph graph, PassContext context, LinearRole linear)
    {
        var data = Int4Linears.WeightData(linear)!;
        var computeType = Int4Linears.ComputeType(linear, data);
        if (computeType is not (TensorDataType.Float or TensorDataType.Float16))
            return $"MatMulNBits computes in FLOAT or FLOAT16, the linear in {computeType.OnnxName()}";
        if (linear.Input.ElementType is { } inputType && inputType != computeType)
            return $"the input '{linear.Input.Name}' is {inputType.OnnxName()}, the weight {computeType.OnnxName()}";
        var node = linear.Node;
        Value? gemmBias = null;
        if (node.Is("Gemm"))
        {
            if (node.GetFloat("alpha", 1) != 1) return "Gemm with alpha != 1";
            gemmBias = node.Input(2);
            if (gemmBias is not null && node.GetFloat("beta", 1) != 1) return "Gemm with beta != 1";
        }
        var weight = Weight(linear, data, computeType);
        var output = node.Outputs[0]!;
        string name = output.Name;
        var editor = context.Model.Edit(graph, new NodeOrigin(PassName, NBitsRule)).InsertingBefore(node);
        string baseName = linear.Weight.Name;
        var b = editor.Initializer(baseName + ".q4", Int4Tensors.MatMulNBitsWeight(weight));
        var scales = editor.Initializer(baseName + ".q4_scales", Int4Tensors.ChannelMajorScales(weight));
        var inputs = new List<Value?> { linear.Input, b, scales };
        if (!Settings.Symmetric) inputs.Add(editor.Initializer(baseName + ".q4_zero_points", Int4Tensors.MatMulNBitsZeroPoints(weight)));
        var nbits = editor.AddNode("MatMulNBits", inputs,
            [Attr.Int("K", weight.K), Attr.Int("N", weight.N), Attr.Int("bits", 4), Attr.Int("block_size", Settings.BlockSize),
             Attr.Int("accuracy_level", Settings.AccuracyLevel)],
            domain: "com.microsoft", name: (node.Name.Length > 0 ? node.Name : "linear") + "_MatMulNBits", outputs: [name + ".q4"]);
        var result = nbits.Outputs[0]!;
        if (gemmBias is not null) result = editor.AddNode("Add", [result, gemmBias], name: nbits.Name + "_bias", outputs: [name + ".q4_bias"]).Outputs[0]!;
        var type = output.Type;
        output.ReplaceAllUsesWith(result);
        graph.Remove(node);
        result.Name = name;
        if (type is not null) result.Type = type;
        return null;
    }

    private string? ToDequantize(Graph graph, PassContext context, LinearRole linear)
    {
        var data = Int4Linears.WeightData(linear)!;
        var (slotNode, slotInput) = Int4Linears.WeightSlot(linear)!.Value;
        var weight = Weight(linear, data, data.DataType);
        var editor = context.Model.Edit(graph, new NodeOrigin(PassName, DequantizeRule)).InsertingBefore(slotNode);
        string baseName = linear.Weight.Name;
        var q = editor.Initializer(baseName + ".int4", Int4Tensors.BlockedWeight(weight));
        var scale = editor.Initializer(baseName + ".int4_scale", Int4Tensors.BlockedScales(weight));
        var inputs = new List<Value?> { q, scale };
        if (!Settings.Symmetric) inputs.Add(editor.Initializer(baseName + ".int4_zero_point", Int4Tensors.BlockedZeroPoints(weight)));
        var dq = editor.AddNode("DequantizeLinear", inputs, [Attr.Int("axis", weight.InputAxis), Attr.Int("block_size", Settings.BlockSize)],
            name: baseName + "_DequantizeLinear", outputs: [baseName + ".dequantized"]);
        var output = dq.Outputs[0]!;
        output.SetTensorType(data.DataType, data.Dims.Select(d => new Dim(d)));
        slotNode.ReplaceInput(slotInput, output);
        return null;
    }
}
