using System.Text.Json;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>The JSON records and text of the roles newer models add (#7): QK-norm, output gate, window, sandwich
/// norms with their slots, embedding scale and logit soft-capping. All additive (optional fields, old ones unchanged) to the layers JSON.</summary>
public static partial class StructureReport
{
    /// <summary>A constant scale on the token embedding output (Gemma: sqrt(hidden)).</summary>
    public sealed record EmbeddingScaleJson(double Scale, bool SqrtHidden, NodeJson Node, string Output);

    /// <summary>cap * tanh(x / cap) on the logits.</summary>
    public sealed record SoftCapJson(double Cap, string Input, string Output);

    /// <summary>A QK-norm: <c>scope</c> perHead (gain of head_size entries after a Reshape that splits heads) or
    /// fullWidth (gain as wide as the projection).</summary>
    public sealed record QkNormJson(string Scope, long NormalizedSize, long? Width, NodeJson? HeadSplit, NormJson Norm);

    /// <summary>Gated attention output: <c>source</c> separateLinear or packedWithQuery (the gate is half of q_proj).</summary>
    public sealed record OutputGateJson(string Source, string Activation, LinearJson Linear, string Gate, string Output);

    /// <summary>Attention window: <c>kind</c> global or sliding, <c>size</c> in keys, <c>source</c> where it was read.</summary>
    public sealed record WindowJson(string Kind, long? Size, string Source);

    /// <summary>One of a block's norms with its place (preAttention, postAttention, preFfn, postFfn, afterAttentionResidual, afterFfnResidual).</summary>
    public sealed record BlockNormJson(string Slot, NormJson Norm);

    private static string Camel<T>(T value) where T : struct, Enum => JsonNamingPolicy.CamelCase.ConvertName(value.ToString());

    private static QkNormJson? QkNorm(QkNormRole? q) => q is null ? null :
        new QkNormJson(Camel(q.Scope), q.NormalizedSize, q.Width, q.HeadSplit is null ? null : NodeOf(q.HeadSplit), Norm(q.Norm)!);

    private static string QkNormText(QkNormRole? q) => q is null ? "-" :
        $"{(q.Scope == QkNormScope.PerHead ? $"per-head [{q.NormalizedSize}]" : $"full-width [{q.NormalizedSize}]")} {NormText(q.Norm)}";
}
