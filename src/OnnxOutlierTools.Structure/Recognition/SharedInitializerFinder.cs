using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Lists every initializer that more than one role reads (norm gains and biases, linear weights and
/// biases, embedding tables), with the roles that read it, in the order the roles appear in the model.</summary>
internal static class SharedInitializerFinder
{
    public static List<SharedInitializer> Find(IReadOnlyList<BlockRole> blocks, EmbeddingRole? embedding, NormRole? finalNorm, LinearRole? lmHead)
    {
        var uses = Uses(blocks, embedding, finalNorm, lmHead);
        // Grouped by the initializer itself (reference identity): names are unique in a graph anyway.
        return uses.GroupBy(u => u.Initializer)
            .Select(g => new SharedInitializer(g.Key, g.Select(u => u.Use).Distinct().ToList()))
            .Where(s => s.Uses.Count > 1)
            .ToList();
    }

    /// <summary>Every role's initializer (gains, biases, weights, tables) with the role's path, in model order.</summary>
    public static List<(Value Initializer, RoleUse Use)> Uses(IReadOnlyList<BlockRole> blocks, EmbeddingRole? embedding, NormRole? finalNorm, LinearRole? lmHead)
    {
        var uses = new List<(Value Initializer, RoleUse Use)>();
        if (embedding is not null)
        {
            uses.Add((embedding.TokenTable, new RoleUse(null, "embedding.tokenTable")));
            if (embedding.PositionTable is { } p) uses.Add((p, new RoleUse(null, "embedding.positionTable")));
            if (embedding.TokenTypeTable is { } t) uses.Add((t, new RoleUse(null, "embedding.tokenTypeTable")));
        }
        foreach (var b in blocks)
        {
            Norm(uses, b.Index, "attentionNorm", b.AttentionNorm);
            if (b.Attention is { } a)
            {
                if (a.LowRank is { } lr)
                {
                    Linear(uses, b.Index, "attention.lowRank.queryDown", lr.QueryDown);
                    Norm(uses, b.Index, "attention.lowRank.queryDownNorm", lr.QueryDownNorm);
                    Linear(uses, b.Index, "attention.lowRank.kvDown", lr.KvDown);
                    Norm(uses, b.Index, "attention.lowRank.kvDownNorm", lr.KvDownNorm);
                }
                Linear(uses, b.Index, "attention.q", a.Query);
                Linear(uses, b.Index, "attention.k", a.Key);
                // One kv_b projection computes both keys and values in MLA: one role, listed once.
                if (a.ValueProjection != a.Key) Linear(uses, b.Index, "attention.v", a.ValueProjection);
                Linear(uses, b.Index, "attention.packedQkv", a.PackedQkv);
                Linear(uses, b.Index, "attention.o", a.Output);
                Norm(uses, b.Index, "attention.queryNorm.norm", a.QueryNorm?.Norm);
                Norm(uses, b.Index, "attention.keyNorm.norm", a.KeyNorm?.Norm);
                if (a.OutputGate is { Source: GateSource.SeparateLinear } gate) Linear(uses, b.Index, "attention.outputGate.linear", gate.Linear);
            }
            if (b.CrossAttention is { } cross)
            {
                Norm(uses, b.Index, "crossAttention.norm", cross.Norm);
                Linear(uses, b.Index, "crossAttention.attention.q", cross.Attention.Query);
                Linear(uses, b.Index, "crossAttention.attention.k", cross.Attention.Key);
                Linear(uses, b.Index, "crossAttention.attention.v", cross.Attention.ValueProjection);
                Linear(uses, b.Index, "crossAttention.attention.o", cross.Attention.Output);
            }
            if (b.Attention?.PositionBias is { } bias) uses.Add((bias.Table, new RoleUse(b.Index, "attention.positionBias.table")));
            Opaque(uses, b.Index, "mixer", b.Mixer);
            Norm(uses, b.Index, "postAttentionNorm", b.PostAttentionNorm);
            Norm(uses, b.Index, "ffnNorm", b.FfnNorm);
            Norm(uses, b.Index, "postFfnNorm", b.PostFfnNorm);
            if (b.Ffn is { } f)
            {
                // A packed gate_up projection is both gate and up: one role, listed once.
                if (f.Gate != f.Up) Linear(uses, b.Index, "ffn.gate", f.Gate);
                Linear(uses, b.Index, "ffn.up", f.Up);
                Linear(uses, b.Index, "ffn.down", f.Down);
            }
            Opaque(uses, b.Index, "opaqueFfn", b.OpaqueFfn);
            if (b.Moe is { } moe)
            {
                Linear(uses, b.Index, "moe.router", moe.Router);
                Linear(uses, b.Index, "moe.sharedExpertGate", moe.SharedExpertGate);
                Ffn(uses, b.Index, "moe.sharedExpert", moe.SharedExpert);
                for (int e = 0; e < moe.Experts.Count; e++) Ffn(uses, b.Index, $"moe.experts[{e}]", moe.Experts[e]);
                foreach (var (role, w) in new[] { ("gate", moe.Gate), ("up", moe.Up), ("down", moe.Down) })
                    if (w is not null && !(role == "up" && moe.FusedGateUp)) uses.Add((w.Weight, new RoleUse(b.Index, $"moe.{role}.weight")));
            }
        }
        Norm(uses, null, "finalNorm", finalNorm);
        Linear(uses, null, "lmHead", lmHead);
        return uses;
    }

    private static void Ffn(List<(Value, RoleUse)> uses, int block, string role, FfnRole? ffn)
    {
        if (ffn is null) return;
        if (ffn.Gate != ffn.Up) Linear(uses, block, role + ".gate", ffn.Gate);
        Linear(uses, block, role + ".up", ffn.Up);
        Linear(uses, block, role + ".down", ffn.Down);
    }

    private static void Opaque(List<(Value, RoleUse)> uses, int block, string role, OpaqueSublayer? sublayer)
    {
        if (sublayer is null) return;
        for (int g = 0; g < sublayer.InputProjections.Count; g++)
            for (int i = 0; i < sublayer.InputProjections[g].Linears.Count; i++)
                Linear(uses, block, $"{role}.inputProjections[{g}].linears[{i}]", sublayer.InputProjections[g].Linears[i]);
        Linear(uses, block, $"{role}.outputProjection", sublayer.OutputProjection);
        for (int i = 0; i < sublayer.InnerNorms.Count; i++) Norm(uses, block, $"{role}.innerNorms[{i}]", sublayer.InnerNorms[i]);
    }

    private static void Norm(List<(Value, RoleUse)> uses, int? block, string role, NormRole? norm)
    {
        if (norm is null) return;
        uses.Add((norm.Gain, new RoleUse(block, role + ".gain")));
        if (norm.Bias is { } bias) uses.Add((bias, new RoleUse(block, role + ".bias")));
    }

    private static void Linear(List<(Value, RoleUse)> uses, int? block, string role, LinearRole? linear)
    {
        if (linear is null) return;
        uses.Add((linear.Weight, new RoleUse(block, role + ".weight")));
        if (linear.Bias is { } bias) uses.Add((bias, new RoleUse(block, role + ".bias")));
    }
}
