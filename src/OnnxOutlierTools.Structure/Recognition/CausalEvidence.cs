using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Whether the graph shows an attention to be causal, which tells a pre-norm decoder without cache or LM head (GPT-2's
/// base model) from a pre-norm encoder (T5's and Whisper's encoders: bidirectional self-attention, no causal mask). Evidence:
/// the op says so (<see cref="AttentionMaskRole.Causal"/>), or a mask joined to the scores is built from a Trilu, from a
/// square constant buffer (GPT-2's <c>attn.bias</c> [1, 1, n, n], a precomputed [.., S, S] causal mask), or from positions
/// compared with each other (Range feeding Less/Greater: HF's mask construction). A padding mask built from
/// <c>attention_mask</c> alone is no evidence, and T5's relative position bias (which compares positions to bucket them) is not
/// entered. Reads shapes only, never tensor data (graph-only exports have none).</summary>
internal static class CausalEvidence
{
    private static readonly HashSet<string> Comparisons = ["Less", "LessOrEqual", "Greater", "GreaterOrEqual"];

    public static bool IsCausal(AttentionRole a)
    {
        if (a.MaskRole.Causal == true) return true;
        foreach (var input in a.MaskRole.Inputs)
            if (BuiltCausally(input.Value, a.PositionBias?.Gather)) return true;
        // A constant mask added to the scores is no mask input (those are computed), but a square one is a causal buffer.
        return a.Form == AttentionForm.Decomposed && a.CoreNodes.Take(a.CoreNodes.Count - 3)
            .SelectMany(n => n.Inputs).Any(i => i is not null && ConstantResolver.Resolve(i)?.Tensor is { } t && IsSquare(t.Dims));
    }

    private static bool IsSquare(IReadOnlyList<long> d) => d.Count >= 2 && d[^1] == d[^2] && d[^1] >= 2;

    private static bool BuiltCausally(Value mask, Node? positionBias)
    {
        var seen = new HashSet<Value>();
        var queue = new Queue<Value>();
        queue.Enqueue(mask);
        bool range = false, comparison = false;
        while (queue.Count > 0 && seen.Count < 256)
        {
            var v = queue.Dequeue();
            if (!seen.Add(v)) continue;
            if (ConstantResolver.Resolve(v) is { } c)
            {
                if (IsSquare(c.Tensor.Dims)) return true;
                continue;
            }
            if (v.Producer is not { } p || p == positionBias) continue;
            if (p.Is("Trilu")) return true;
            range |= p.Is("Range");
            comparison |= p.IsDefaultDomain && Comparisons.Contains(p.OpType);
            foreach (var i in p.Inputs) if (i is not null) queue.Enqueue(i);
        }
        return range && comparison;
    }
}
