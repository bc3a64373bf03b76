using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>The attention mask's kind in the layers JSON (<c>attention.maskRole</c>, additive: <c>attention.mask</c> keeps
/// naming the value) and in the table.</summary>
public static partial class StructureReport
{
    /// <summary>The attention's mask: <c>kind</c> (none, causal, seqLensK, totalSequenceLength, booleanMask, additiveBias,
    /// multiplicativeMask, keyPaddingMask, keyLengths) and <c>value</c> of the primary mask, its <c>origin</c> (none, graphInput,
    /// derivedFromAttentionMask, computed), <c>causal</c> (null when the graph does not say) and every mask-like input.</summary>
    public sealed record AttentionMaskJson(string Kind, string? Value, string Origin, bool? Causal, IReadOnlyList<MaskInputJson> Inputs);

    /// <summary>One mask-like input: <c>inputIndex</c> on the op (null in a decomposed graph, where <c>join</c> is the node
    /// that applies it to the scores).</summary>
    public sealed record MaskInputJson(string Kind, string Value, string Origin, int? InputIndex, NodeJson? Join);

    private static AttentionMaskJson MaskJson(AttentionMaskRole m) => new(Camel(m.Kind), m.Value?.Name, Camel(m.Origin), m.Causal,
        m.Inputs.Select(i => new MaskInputJson(Camel(i.Kind), i.Value.Name, Camel(i.Origin), i.InputIndex, i.JoinNode is null ? null : NodeOf(i.JoinNode))).ToList());

    /// <summary>", mask seqLensK NAME (derivedFromAttentionMask, causal)" or ", causal" or "".</summary>
    private static string MaskText(AttentionRole a)
    {
        var m = a.MaskRole;
        string causal = m.Causal == true ? ", causal" : "";
        if (a.Mask is null) return m.Value is null ? causal : $", mask {Camel(m.Kind)} {m.Value.Name} ({Camel(m.Origin)}){causal}";
        return $", mask {Camel(m.Kind)} {a.Mask.Name} ({Camel(m.Origin)}){causal}";
    }
}
