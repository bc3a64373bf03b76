using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Encoder-decoder roles in the layers JSON (additive: block <c>crossAttention</c>, <c>attention.positionBias</c>) and the table.</summary>
public static partial class StructureReport
{
    /// <summary>Cross-attention: its norm, the encoder output its keys and values read (null when they come from the cache only),
    /// the attention (same shape as a block's <c>attention</c>), the stream after its residual add, and its cache (the encoder
    /// keys/values emitted as present or read as past; null when the graph has neither).</summary>
    public sealed record CrossAttentionJson(NormJson? Norm, string? EncoderOutput, AttentionJson Attention, TensorJson? Residual, KvJson? KvCache = null);

    /// <summary>T5's relative position bias: the [buckets, heads] table, the Gather that reads it, the bias added to the scores.</summary>
    public sealed record RelativePositionBiasJson(string Table, long Buckets, long Heads, NodeJson Gather, string Bias);

    /// <summary>Encoder and decoder in one graph: blocks 0 to <c>blockCount</c> - 1 are the encoder's; its output and final norm.</summary>
    public sealed record EncoderStackJson(int BlockCount, string Output, NormJson? FinalNorm);

    private static EncoderStackJson? EncoderStackOf(EncoderStackRole? e) => e is null ? null : new(e.BlockCount, e.Output.Name, Norm(e.FinalNorm));

    private static void AppendEncoderEnd(EscapedLines lines, EncoderStackRole e)
    {
        lines.Add($"encoder norm    {NormText(e.FinalNorm)}");
        lines.Add($"encoder output  {e.Output.Name} (blocks 0-{e.BlockCount - 1} are the encoder's; the cross-attentions read it)");
    }

    private static CrossAttentionJson? Cross(CrossAttentionRole? c, int block) => c is null ? null :
        new(Norm(c.Norm), c.EncoderOutput?.Name, Attention(c.Attention), c.Residual is null ? null : Tensor(c.Residual), Kv(block, c.Cache));

    private static RelativePositionBiasJson? PositionBiasJson(RelativePositionBiasRole? p) => p is null ? null :
        new(p.Table.Name, p.Buckets, p.Heads, NodeOf(p.Gather), p.Bias.Name);

    private static string PositionBiasText(RelativePositionBiasRole p) => $"relative {p.Table.Name} [{p.Buckets} buckets x {p.Heads} heads] -> {p.Bias.Name}";

    private static void AppendCross(EscapedLines lines, CrossAttentionRole c)
    {
        var a = c.Attention;
        lines.Add($"  cross norm    {NormText(c.Norm)}");
        string source = c.EncoderOutput is { } enc ? enc.Name : "the cache";
        lines.Add($"  cross attn    {a.Form}: heads {a.NumHeads?.ToString() ?? "?"} head {a.HeadSize?.ToString() ?? "?"}, keys/values from {source}{MaskText(a)}");
        lines.Add($"                q {LinearText(a.Query)} | k {LinearText(a.Key)} | v {LinearText(a.ValueProjection)} | o {LinearText(a.Output)}");
        if (c.Cache is { } cache) lines.Add($"  cross kv      {KvText(cache)}");
        lines.Add($"  cross residual {c.Residual?.ToString() ?? "-"}");
    }
}
