using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Encoder-decoder roles in the layers JSON (additive: block <c>crossAttention</c>, <c>attention.positionBias</c>) and the table.</summary>
public static partial class StructureReport
{
    /// <summary>Cross-attention: its norm, the encoder output its keys and values read, the attention (same shape as a block's
    /// <c>attention</c>), and the stream after its residual add.</summary>
    public sealed record CrossAttentionJson(NormJson? Norm, string EncoderOutput, AttentionJson Attention, TensorJson? Residual);

    /// <summary>T5's relative position bias: the [buckets, heads] table, the Gather that reads it, the bias added to the scores.</summary>
    public sealed record RelativePositionBiasJson(string Table, long Buckets, long Heads, NodeJson Gather, string Bias);

    private static CrossAttentionJson? Cross(CrossAttentionRole? c) => c is null ? null :
        new(Norm(c.Norm), c.EncoderOutput.Name, Attention(c.Attention), c.Residual is null ? null : Tensor(c.Residual));

    private static RelativePositionBiasJson? PositionBiasJson(RelativePositionBiasRole? p) => p is null ? null :
        new(p.Table.Name, p.Buckets, p.Heads, NodeOf(p.Gather), p.Bias.Name);

    private static string PositionBiasText(RelativePositionBiasRole p) => $"relative {p.Table.Name} [{p.Buckets} buckets x {p.Heads} heads] -> {p.Bias.Name}";

    private static void AppendCross(EscapedLines lines, CrossAttentionRole c)
    {
        var a = c.Attention;
        lines.Add($"  cross norm    {NormText(c.Norm)}");
        lines.Add($"  cross attn    {a.Form}: heads {a.NumHeads?.ToString() ?? "?"} head {a.HeadSize?.ToString() ?? "?"}, keys/values from {c.EncoderOutput.Name}{MaskText(a)}");
        lines.Add($"                q {LinearText(a.Query)} | k {LinearText(a.Key)} | v {LinearText(a.ValueProjection)} | o {LinearText(a.Output)}");
        lines.Add($"  cross residual {c.Residual?.ToString() ?? "-"}");
    }
}
