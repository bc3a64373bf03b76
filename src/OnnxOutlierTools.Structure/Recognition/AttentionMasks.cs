using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Classifies the mask of a recognized attention (<see cref="AttentionMaskRole"/>): by the op's input
/// signature for the fused forms, by the element type for ai.onnx Attention and SDPA, by the node that joins it
/// to the scores for a decomposed attention. Reads only; the facts come from the graph.</summary>
public static class AttentionMasks
{
    private const string Ms = "com.microsoft";

    internal static AttentionMaskRole Classify(Node node, AttentionRole role)
    {
        var inputs = new List<MaskInput>();
        bool? causal = null;
        void Add(MaskKind kind, int index)
        {
            if (node.Input(index) is { } v) inputs.Add(new MaskInput(kind, v, OriginOf(v), index));
        }
        if (node.Is("GroupQueryAttention", Ms))
        {
            // seqlens_k (5), total_sequence_length (6), attention_bias (10, newer ORT); the op is causal by definition.
            Add(MaskKind.SeqLensK, 5);
            Add(MaskKind.TotalSequenceLength, 6);
            Add(MaskKind.AdditiveBias, 10);
            causal = true;
        }
        else if (node.Is("MultiHeadAttention", Ms))
        {
            Add(MaskKind.KeyPaddingMask, 4);
            Add(MaskKind.AdditiveBias, 5);
            causal = Unidirectional(node);
        }
        else if (node.Is("Attention", Ms))
        {
            // mask_index (3): 1-D = key lengths, else a 0/1 padding mask; attention_bias (5).
            if (node.Input(3) is { } m) inputs.Add(new MaskInput(m.Shape?.Count == 1 ? MaskKind.KeyLengths : MaskKind.KeyPaddingMask, m, OriginOf(m), 3));
            Add(MaskKind.AdditiveBias, 5);
            causal = Unidirectional(node);
        }
        else if (node.Is("Attention"))
        {
            if (node.Input(3) is { } m) inputs.Add(new MaskInput(ByElementType(m), m, OriginOf(m), 3));
            causal = node.GetAttribute("is_causal") is null ? false : node.GetInt("is_causal", 0) != 0;
        }
        else if (node.Is("Softmax"))
        {
            inputs.AddRange(DecomposedJoins(role));
            // The primary mask is the join whose side branch carries the value the old Mask field names.
            if (role.Mask is { } old && inputs.FirstOrDefault(i => Reaches(i.Value, old)) is { } primaryJoin)
                return Result(primaryJoin, inputs, causal);
        }
        else if (CustomAttentionOps.For(node) is { } op)
        {
            if (op.Mask is int mi && node.Input(mi) is { } m) inputs.Add(new MaskInput(ByElementType(m), m, OriginOf(m), mi));
            if (node.GetAttribute("is_causal") is not null) causal = node.GetInt("is_causal", 0) != 0;
        }

        var primary = role.Mask is { } pm ? inputs.FirstOrDefault(i => i.Value == pm) : null;
        return Result(primary ?? inputs.FirstOrDefault(), inputs, causal);
    }

    private static AttentionMaskRole Result(MaskInput? primary, List<MaskInput> inputs, bool? causal) => primary is null
        ? new AttentionMaskRole(causal == true ? MaskKind.Causal : MaskKind.None, null, MaskOrigin.None, causal, inputs)
        : new AttentionMaskRole(primary.Kind, primary.Value, primary.Origin, causal, inputs);

    /// <summary>Where masks meet the scores of a decomposed attention: walking the score line from Q K^T to the Softmax,
    /// each node's computed side input is a mask, its kind given by the node: the condition of a Where selects (boolean),
    /// an Add or Sub adds a bias, a Mul multiplies by a 0/1 mask. <see cref="MaskInput.Value"/> is the side input itself.</summary>
    private static IEnumerable<MaskInput> DecomposedJoins(AttentionRole role)
    {
        if (role.CoreNodes.Count < 3) yield break;
        var qk = role.CoreNodes[^3];
        var softmax = role.CoreNodes[^2];
        var path = role.CoreNodes.Take(role.CoreNodes.Count - 3).ToHashSet();
        var line = qk.Output(0);
        for (int step = 0; step < 16 && line is not null; step++)
        {
            var next = line.Uses.Select(u => u.Node).FirstOrDefault(n => n is not null && (path.Contains(n) || n == softmax));
            if (next is null || next == softmax) yield break;
            for (int i = 0; i < next.Inputs.Count; i++)
            {
                if (next.Inputs[i] is not { } side || side == line || side.IsInitializer || ConstantResolver.ScalarOf(side) is not null
                    || ConstantResolver.Resolve(side) is not null) continue;
                MaskKind? kind = next.OpType switch
                {
                    "Where" when i == 0 => MaskKind.BooleanMask,
                    "Add" or "Sub" => MaskKind.AdditiveBias,
                    "Mul" => MaskKind.MultiplicativeMask,
                    _ => null,
                };
                if (kind is { } k) yield return new MaskInput(k, side, OriginOf(side), null, next);
            }
            line = next.Output(0);
        }
    }

    /// <summary>Whether <paramref name="target"/> is <paramref name="from"/> or lies upstream of it (bounded search).</summary>
    private static bool Reaches(Value from, Value target)
    {
        var seen = new HashSet<Value>();
        var stack = new Stack<Value>();
        stack.Push(from);
        while (stack.Count > 0 && seen.Count < 512)
        {
            var v = stack.Pop();
            if (v == target) return true;
            if (!seen.Add(v) || v.Producer is not { } p) continue;
            foreach (var input in p.Inputs) if (input is not null && !input.IsInitializer) stack.Push(input);
        }
        return false;
    }

    private static bool? Unidirectional(Node node) => node.GetAttribute("unidirectional") is null ? false : node.GetInt("unidirectional", 0) != 0;

    /// <summary>ai.onnx Attention and SDPA: a bool mask selects, any other type is added to the scores.</summary>
    private static MaskKind ByElementType(Value mask) => ElementType(mask) == TensorDataType.Bool ? MaskKind.BooleanMask : MaskKind.AdditiveBias;

    private static readonly HashSet<string> Comparisons = ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf"];
    private static readonly HashSet<string> SameAsFirst = ["Unsqueeze", "Squeeze", "Reshape", "Expand", "Slice", "Tile", "Transpose", "Identity", "Gather", "Flatten", "Trilu", "Concat", "Pad"];
    private static readonly HashSet<string> Arithmetic = ["Add", "Sub", "Mul", "Div", "Neg", "Min", "Max", "Abs"];

    /// <summary>The element type of a value: declared, or inferred through the ops masks are built from (Cast, Where,
    /// comparisons, layout ops, arithmetic). Null when unknown within a few steps.</summary>
    public static TensorDataType? ElementType(Value value, int depth = 0)
    {
        if (value.ElementType is { } t) return t;
        if (depth > 24 || value.Producer is not { } p || !p.IsDefaultDomain) return null;
        if (p.Is("Cast")) return p.GetAttribute("to") is { } to ? (TensorDataType)to.AsInt() : null;
        if (Comparisons.Contains(p.OpType)) return TensorDataType.Bool;
        if (p.Is("Where")) return First(p, [1, 2], depth);
        if (p.Is("ConstantOfShape")) return p.GetAttribute("value") is { } v ? v.AsTensor().DataType : TensorDataType.Float;
        if (p.Is("Constant")) return p.GetAttribute("value") is { } c ? c.AsTensor().DataType : null;
        if (p.Is("Shape") || p.Is("Size")) return TensorDataType.Int64;
        if (p.Is("Range")) return First(p, [0], depth);
        if (SameAsFirst.Contains(p.OpType)) return First(p, [0], depth);
        if (Arithmetic.Contains(p.OpType)) return First(p, Enumerable.Range(0, p.Inputs.Count), depth);
        return null;
    }

    private static TensorDataType? First(Node p, IEnumerable<int> indices, int depth)
    {
        foreach (int i in indices)
            if (p.Input(i) is { } v && ElementType(v, depth + 1) is { } t) return t;
        return null;
    }

    private static readonly HashSet<string> PassThrough = ["Cast", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Expand"];

    /// <summary>Whether the mask is a graph input (behind pass-through ops), is computed from the values of a *mask* graph
    /// input, or from neither (shapes and constants: a causal mask; a Shape of attention_mask does not count).</summary>
    public static MaskOrigin OriginOf(Value mask)
    {
        var v = mask;
        for (int i = 0; i < 8 && !v.IsGraphInput && v.Producer is { } p && PassThrough.Contains(p.OpType) && p.Input(0) is { } x; i++) v = x;
        if (v.IsGraphInput && !v.IsInitializer) return MaskOrigin.GraphInput;
        var seen = new HashSet<Value>();
        var stack = new Stack<Value>();
        stack.Push(mask);
        while (stack.Count > 0 && seen.Count < 4096)
        {
            var cur = stack.Pop();
            if (!seen.Add(cur)) continue;
            if (cur.IsGraphInput && !cur.IsInitializer)
            {
                if (cur.Name.Contains("mask", StringComparison.OrdinalIgnoreCase)) return MaskOrigin.DerivedFromAttentionMask;
                continue;
            }
            // A Shape (or Size) reads only its input's shape: the mask does not depend on those values (nor does the walk go
            // up the residual stream through them).
            if (cur.Producer is { } p && !p.Is("Shape") && !p.Is("Size"))
                foreach (var input in p.Inputs)
                    if (input is not null && !input.IsInitializer) stack.Push(input);
        }
        return MaskOrigin.Computed;
    }
}
