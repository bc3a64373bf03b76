using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Renders a recognition result as the stable JSON other commands consume, as a text table of
/// blocks and roles, and the tracer's near misses (--explain).</summary>
public static partial class StructureReport
{
    // The serializer options every JSON output shares (escaping, naming, nulls): see JsonOutput.
    private static JsonSerializerOptions Json => Inspection.JsonOutput.Options;

    // ---- JSON data (names of values and initializers; stable property names) ----------------------

    /// <summary>Version of the layers JSON; bump on incompatible changes. 2: a block has a <c>kind</c>; <c>attention</c> and
    /// <c>ffn</c> may be null (the block's <c>mixer</c> / <c>opaqueFfn</c> then describe the sublayer); <c>classifierHead</c>.</summary>
    public const int SchemaVersion = 2;

    /// <summary>A node: its name (null when the exporter gave none), op type, domain and first output.</summary>
    public sealed record NodeJson(string? Name, string OpType, string? Domain, string? Output);

    /// <summary>A tensor: the value's name, or (when not emitted yet) the node and output index that compute it.</summary>
    public sealed record TensorJson(string? Value, bool Emitted, NodeJson? Node, int OutputIndex);

    public sealed record LayersJson(int SchemaVersion, bool Recognized, string Message, string? Graph, string? NestedIn, string? Architecture, string? NormPlacement,
        int BlockCount, IReadOnlyList<BlockJson> Blocks, EmbeddingJson? Embedding, NormJson? FinalNorm, LinearJson? LmHead, LinearJson? ClassifierHead,
        InputsJson? Inputs, IReadOnlyList<KvJson> KvCache, IReadOnlyList<SharedInitializerJson> SharedInitializers, IReadOnlyList<string> Hints,
        IReadOnlyList<string> GraphsSearched, IReadOnlyList<TraceJson>? Trace,
        EmbeddingScaleJson? EmbeddingScale = null, SoftCapJson? LogitSoftcap = null, ExternalEmbeddingJson? ExternalEmbedding = null,
        BranchesJson? Branches = null, EncoderStackJson? EncoderStack = null);

    /// <summary>An initializer several roles read; <see cref="RoleUseJson.Role"/> is the role's path in a block
    /// (or at model level when <see cref="RoleUseJson.Block"/> is null), e.g. <c>attentionNorm.gain</c>.</summary>
    public sealed record SharedInitializerJson(string Name, IReadOnlyList<RoleUseJson> Uses);

    public sealed record RoleUseJson(int? Block, string Role);

    /// <summary>A block. <see cref="Kind"/>: attention, linear-attention, ssm, conv or unknown; for kinds other than attention
    /// <see cref="Attention"/> is null and <see cref="Mixer"/> describes the token mixer; <see cref="Ffn"/> is null when
    /// <see cref="OpaqueFfn"/> describes an FFN no rule matched.</summary>
    public sealed record BlockJson(int Index, string Kind, string Placement, bool ParallelResidual, TensorJson ResidualIn, TensorJson? AttentionResidual, TensorJson ResidualOut,
        NormJson? AttentionNorm, AttentionJson? Attention, SublayerJson? Mixer, NormJson? FfnNorm, FfnJson? Ffn, SublayerJson? OpaqueFfn, MoeJson? Moe,
        IReadOnlyList<string> Missing, NormJson? PostAttentionNorm = null, NormJson? PostFfnNorm = null, IReadOnlyList<BlockNormJson>? Norms = null,
        CrossAttentionJson? CrossAttention = null);

    /// <summary>A mixture-of-experts FFN: fused (stacked <c>gate</c>/<c>up</c>/<c>down</c> expert weights) or decomposed
    /// (<c>experts</c>, one FFN each); the router linear, top-k, the shared expert and its gate.</summary>
    public sealed record MoeJson(string Form, string Op, NodeJson Node, string Input, string Output, LinearJson? Router, int? TopK, int? NumExperts,
        string Activation, ExpertWeightsJson? Gate, ExpertWeightsJson? Up, ExpertWeightsJson? Down, bool FusedGateUp, IReadOnlyList<FfnJson> Experts,
        FfnJson? SharedExpert, LinearJson? SharedExpertGate);

    public sealed record ExpertWeightsJson(string Weight, string? Scales, string? Bias, string Layout, long Experts, long InFeatures, long OutFeatures, int? Bits);

    /// <summary>A sublayer found from the residual stream whose internals stay opaque: its linears grouped by the tensor
    /// they read, its output projection, inner norms, recurrent states and core ops, and what was not understood.</summary>
    public sealed record SublayerJson(string Kind, string Form, string Input, string Output, IReadOnlyList<LinearGroupJson> InputProjections,
        LinearJson? OutputProjection, IReadOnlyList<NormJson> InnerNorms, IReadOnlyList<StateJson> States, IReadOnlyList<NodeJson> CoreNodes,
        IReadOnlyList<string> NotUnderstood);

    public sealed record LinearGroupJson(string Reads, string? NormGain, IReadOnlyList<LinearJson> Linears);

    public sealed record StateJson(string Kind, string? Past, string? Present);

    public sealed record NormJson(string Kind, string Form, NodeJson Node, TensorJson Input, string? Skip, string Output, string Gain, bool GainShared,
        string? Bias, double? Epsilon, TensorJson? ResidualSum, string GainForm = "plain");

    /// <summary>A linear. <see cref="WeightSelection"/> is set when <see cref="Weight"/> is a stack of weights one of which a
    /// Gather picks at run time; <see cref="Layout"/>, <see cref="InFeatures"/> and <see cref="OutFeatures"/> then describe one slice.</summary>
    public sealed record LinearJson(string Form, NodeJson Node, string Input, string Output, string Weight, string Layout, string? Bias,
        bool Quantized, long InFeatures, long OutFeatures, string? WeightType, WeightSelectionJson? WeightSelection = null);

    /// <summary>The stacked initializer, the Gather, its index (a graph input, or a constant with <see cref="IndexValue"/>),
    /// the axis picked along and how many weights the stack holds.</summary>
    public sealed record WeightSelectionJson(string Stacked, NodeJson Gather, string Index, long? IndexValue, int Axis, long Count);

    public sealed record AttentionJson(string Form, NodeJson Node, LinearJson? Q, LinearJson? K, LinearJson? V, LinearJson? PackedQkv, LinearJson? O,
        int? NumHeads, int? KvHeads, int? HeadSize, string Rotary, string? Mask, string? Probabilities, string Output,
        QkNormJson? QueryNorm = null, QkNormJson? KeyNorm = null, OutputGateJson? OutputGate = null, WindowJson? Window = null, double? Softcap = null,
        LowRankJson? LowRank = null, AttentionMaskJson? MaskRole = null,
        RelativePositionBiasJson? PositionBias = null);

    /// <summary>Multi-head latent attention's down-projections and their norms (q_a, kv_a_proj_with_mqa).</summary>
    public sealed record LowRankJson(LinearJson QueryDown, NormJson? QueryDownNorm, LinearJson KvDown, NormJson? KvDownNorm);

    public sealed record FfnJson(string Kind, string Activation, LinearJson? Gate, LinearJson Up, LinearJson Down, string DownInput, bool PackedGateUp);

    public sealed record EmbeddingJson(string Form, NodeJson Node, string TokenTable, string? PositionTable, string Output, string? TokenTypeTable, string? TokenIds);

    public sealed record InputsJson(string? InputIds, string? AttentionMask, string? PositionIds, string? TokenTypeIds);

    public sealed record KvJson(int Layer, string? PastKey, string? PastValue, string? PresentKey, string? PresentValue, bool Stacked);

    public sealed record TraceJson(string Category, string Rule, int Matches, string? NearMiss, IReadOnlyList<string> Notes);

    public static LayersJson ToJson(RecognitionResult result, bool includeTrace)
    {
        var s = result.Structure;
        var trace = includeTrace ? TraceItems(result).ToList() : null;
        if (s is null)
            return new LayersJson(SchemaVersion, false, result.Message, null, null, null, null, 0, [], null, null, null, null, null, [], [], [], result.GraphsSearched, trace);
        return new LayersJson(SchemaVersion, true, result.Message, s.Graph.Name, s.NestedIn, s.Architecture.Name(), s.Placement.Name(),
            s.Blocks.Count, s.Blocks.Select(Block).ToList(),
            s.Embedding is { } e ? new EmbeddingJson(e.Form.Name(), NodeOf(e.Node), e.TokenTable.Name, e.PositionTable?.Name, e.Output.Name, e.TokenTypeTable?.Name, e.TokenIds?.Name) : null,
            Norm(s.FinalNorm), Linear(s.LmHead), Linear(s.ClassifierHead),
            new InputsJson(s.Inputs.InputIds?.Name, s.Inputs.AttentionMask?.Name, s.Inputs.PositionIds?.Name, s.Inputs.TokenTypeIds?.Name),
            s.Blocks.Where(b => b.Attention?.Cache is not null).Select(b => Kv(b.Index, b.Attention!.Cache)!).ToList(),
            s.SharedInitializers.Select(x => new SharedInitializerJson(x.Initializer.Name, x.Uses.Select(u => new RoleUseJson(u.Block, u.Role)).ToList())).ToList(),
            s.Hints.Select(HintText).ToList(), result.GraphsSearched, trace,
            s.EmbeddingScale is { } es ? new EmbeddingScaleJson(es.Scale, es.IsSqrtHidden, NodeOf(es.Node), es.Output.Name) : null,
            s.LogitSoftcap is { } sc ? new SoftCapJson(sc.Cap, sc.Input.Name, sc.Output.Name) : null, External(s.ExternalEmbedding),
            BranchesOf(s.Branches), EncoderStackOf(s.EncoderStack));
    }

    public static string Serialize(LayersJson json) => JsonSerializer.Serialize(json, Json);

    private static KvJson? Kv(int layer, KvCacheRole? c) => c is null ? null :
        new KvJson(layer, c.PastKey?.Name, c.PastValue?.Name, c.PresentKey?.Name, c.PresentValue?.Name, c.Stacked);

    private static string KvText(KvCacheRole c) =>
        $"past {c.PastKey?.Name ?? "-"}/{c.PastValue?.Name ?? "-"} -> present {c.PresentKey?.Name ?? "-"}/{c.PresentValue?.Name ?? "-"}{(c.Stacked ? " (stacked)" : "")}";

    private static NodeJson NodeOf(Node n) => new(n.Name.Length > 0 ? n.Name : null, n.OpType, n.IsDefaultDomain ? null : n.Domain,
        n.Outputs.FirstOrDefault(o => o is not null)?.Name);

    private static TensorJson Tensor(TensorRef t) => new(t.Value?.Name, t.IsEmitted, t.Node is null ? null : NodeOf(t.Node), t.OutputIndex);

    private static BlockJson Block(BlockRole b) => new(b.Index, KindName(b.Kind), b.Placement.Name(), b.ParallelResidual,
        Tensor(b.ResidualIn), b.AttentionResidual is null ? null : Tensor(b.AttentionResidual), Tensor(b.ResidualOut),
        Norm(b.AttentionNorm), b.Attention is null ? null : Attention(b.Attention), Sublayer(b.Mixer), Norm(b.FfnNorm), b.Ffn is null ? null : Ffn(b.Ffn),
        Sublayer(b.OpaqueFfn), Moe(b.Moe), Missing(b),
        Norm(b.PostAttentionNorm), Norm(b.PostFfnNorm), b.Norms.Select(n => new BlockNormJson(Camel(n.Slot), Norm(n.Norm)!)).ToList(),
        Cross(b.CrossAttention, b.Index));

    private static ExpertWeightsJson? Experts(ExpertWeights? w) => w is null ? null : new(w.Weight.Name, w.Scales?.Name, w.Bias?.Name,
        w.Layout.Name(), w.Experts, w.InFeatures, w.OutFeatures, w.Bits);

    private static MoeJson? Moe(MoeRole? m) => m is null ? null : new(m.Form.Name(), m.Op, NodeOf(m.Node),
        m.Input.Name, m.Output.Name, Linear(m.Router), m.TopK, m.NumExperts, m.Activation.ToString(), Experts(m.Gate), Experts(m.Up), Experts(m.Down), m.FusedGateUp,
        m.Experts.Select(Ffn).ToList(), m.SharedExpert is null ? null : Ffn(m.SharedExpert), Linear(m.SharedExpertGate));

    /// <summary>The block kind as the JSON and the table spell it (<see cref="RoleNames"/>).</summary>
    public static string KindName(BlockKind kind) => kind.Name();

    private static SublayerJson? Sublayer(OpaqueSublayer? o) => o is null ? null : new(KindName(o.Kind), o.Form.ToString(), o.Input.Name, o.Output.Name,
        o.InputProjections.Select(g => new LinearGroupJson(g.Reads.Name, g.Norm?.Gain.Name, g.Linears.Select(l => Linear(l)!).ToList())).ToList(),
        Linear(o.OutputProjection), o.InnerNorms.Select(n => Norm(n)!).ToList(),
        o.States.Select(st => new StateJson(st.Kind.Name(), st.Past?.Name, st.Present?.Name)).ToList(),
        o.CoreNodes.Select(NodeOf).ToList(), o.NotUnderstood);

    /// <summary>Roles a complete block has but this one lacks (empty when complete).</summary>
    public static IReadOnlyList<string> Missing(BlockRole b)
    {
        var missing = new List<string>();
        if (b.AttentionNorm is null && b.PostAttentionNorm is null) missing.Add("attentionNorm");
        if (b.FfnNorm is null && b.PostFfnNorm is null) missing.Add("ffnNorm");
        if (b.Ffn is null && b.Moe is null) missing.Add(b.OpaqueFfn is null ? "ffn" : "ffn (unknown)");
        if (b.Attention is not { } a)
        {
            if (b.Mixer is null || b.Mixer.Kind == BlockKind.Unknown) missing.Add("tokenMixer (unknown)");
            if (b.Mixer is { OutputProjection: null }) missing.Add("o");
            return missing;
        }
        if (a.PackedQkv is null && (a.Query is null || a.Key is null || a.ValueProjection is null)) missing.Add("qkv");
        if (a.Output is null) missing.Add("o");
        if (a.NumHeads is null or 0) missing.Add("numHeads");
        if (a.HeadSize is null or 0) missing.Add("headSize");
        if (b.Ffn is { Kind: FfnKind.Glu, Gate: null }) missing.Add("gate");
        if (b.CrossAttention is { } c)
        {
            if (c.Norm is null) missing.Add("crossAttention.norm");
            var ca = c.Attention;
            if (ca.Key is null && ca.ValueProjection is null && !ca.KeysAndValuesFromCache || (ca.Key is null) != (ca.ValueProjection is null)) missing.Add("crossAttention.kv");
            if (ca.NumHeads is null or 0) missing.Add("crossAttention.numHeads");
            if (ca.HeadSize is null or 0) missing.Add("crossAttention.headSize");
            if (c.Residual is null) missing.Add("crossAttention.residual");
        }
        return missing;
    }

    private static NormJson? Norm(NormRole? n) => n is null ? null : new NormJson(n.Kind.Name(), n.Form.Name(),
        NodeOf(n.OutputNode), Tensor(n.Input), n.Skip?.Name, n.Output.Name, n.Gain.Name, n.Gain.Uses.Count > 1, n.Bias?.Name,
        n.Epsilon is double e ? Math.Round(e, 10) : null, n.ResidualSum is null ? null : Tensor(n.ResidualSum), Camel(n.GainForm));

    private static LinearJson? Linear(LinearRole? l) => l is null ? null : new LinearJson(l.Form.Name(), NodeOf(l.Node), l.Input.Name, l.Output.Name,
        l.Weight.Name, l.Layout.Name(), l.Bias?.Name, l.Quantized, l.InFeatures, l.OutFeatures,
        l.Weight.ElementType is { } t ? Tensors.TensorDataTypeInfo.OnnxName(t) : null,
        l.Selection is { } sel ? new WeightSelectionJson(sel.Stacked.Name, NodeOf(sel.Gather), sel.Index.Name, sel.IndexValue, sel.Axis, sel.Count) : null);

    private static AttentionJson Attention(AttentionRole a) => new(a.Form.ToString(), NodeOf(a.CoreNodes[^1]), Linear(a.Query), Linear(a.Key), Linear(a.ValueProjection),
        Linear(a.PackedQkv), Linear(a.Output), a.NumHeads, a.KvHeads, a.HeadSize, a.Rotary.ToString(), a.Mask?.Name, a.Probabilities?.Name, a.AttentionOutput.Name,
        QkNorm(a.QueryNorm), QkNorm(a.KeyNorm),
        a.OutputGate is { } g ? new OutputGateJson(Camel(g.Source), Camel(g.Activation), Linear(g.Linear)!, g.GateInput.Name, g.Output.Name) : null,
        new WindowJson(Camel(a.Window.Kind), a.Window.Size, Camel(a.Window.Source)), a.Softcap,
        a.LowRank is { } lr ? new LowRankJson(Linear(lr.QueryDown)!, Norm(lr.QueryDownNorm), Linear(lr.KvDown)!, Norm(lr.KvDownNorm)) : null,
        MaskJson(a.MaskRole), PositionBiasJson(a.PositionBias));

    private static FfnJson Ffn(FfnRole f) => new(f.Kind.Name(), f.Activation.Name(), Linear(f.Gate), Linear(f.Up)!, Linear(f.Down)!, f.DownInput.Name, f.Gate == f.Up);

    private static IEnumerable<TraceJson> TraceItems(RecognitionResult result) =>
        result.Trace.Rules.Select(r => new TraceJson(r.Category, r.Rule, r.Matches, r.NearMiss?.ToString(), r.Notes));

    // ---- text ---------------------------------------------------------------------------------------

    /// <summary>The role table (and with <paramref name="explain"/> the rule trace). Every line goes through
    /// <see cref="EscapedLines"/>: names from the file cannot forge lines.</summary>
    public static string ToText(RecognitionResult result, bool explain)
    {
        var lines = new EscapedLines();
        var s = result.Structure;
        if (s is null)
        {
            lines.Add($"Structure not recognized: {result.Message}.");
            lines.Add("Graphs searched: " + string.Join("; ", result.GraphsSearched));
            lines.Add("Why (each rule's best near miss; --explain shows the same for recognized models):");
            AppendTrace(lines, result);
            return lines.ToString();
        }
        lines.Add($"Structure: {result.Message}{(s.NestedIn is null ? "" : $", nested in {s.NestedIn}")}");
        if (s.Embedding is { } e) lines.Add($"  embedding     {e.Form.Name()}: {e.TokenTable.Name}{(e.PositionTable is null ? "" : $" + positions {e.PositionTable.Name}")}{(e.TokenTypeTable is null ? "" : $" + token types {e.TokenTypeTable.Name}")} -> {e.Output.Name}");
        if (s.ExternalEmbedding is { } ext) AppendExternal(lines, ext);
        if (s.EmbeddingScale is { } es) lines.Add($"  embed scale   x {es.Scale:G6}{(es.IsSqrtHidden ? " (sqrt(hidden))" : "")} -> {es.Output.Name}");
        lines.Add($"  inputs        ids={s.Inputs.InputIds?.Name ?? "-"} mask={s.Inputs.AttentionMask?.Name ?? "-"} positions={s.Inputs.PositionIds?.Name ?? "-"} token_types={s.Inputs.TokenTypeIds?.Name ?? "-"}");
        foreach (var b in s.Blocks)
        {
            lines.Add($"block {b.Index}{(b.Kind == BlockKind.Attention ? "" : $" [{KindName(b.Kind)}]")}{(b.ParallelResidual ? " (parallel attention and FFN)" : "")}{(Missing(b) is { Count: > 0 } m ? $"  INCOMPLETE: missing {string.Join(", ", m)}" : "")}");
            lines.Add($"  residual in   {b.ResidualIn}");
            lines.Add($"  {(b.Attention is null ? "mixer norm   " : "attn norm    ")} {NormText(b.AttentionNorm)}");
            if (b.Attention is not { } a)
            {
                if (b.Mixer is { } mixer) AppendSublayer(lines, "mixer", mixer);
            }
            else
            {
            string qkv = a.PackedQkv is { } p ? $"packed qkv {LinearText(p)}" : $"q {LinearText(a.Query)} | k {LinearText(a.Key)} | v {LinearText(a.ValueProjection)}";
            lines.Add($"  attention     {a.Form}: heads {a.NumHeads?.ToString() ?? "?"} kv {a.KvHeads?.ToString() ?? "?"} head {a.HeadSize?.ToString() ?? "?"}, rotary {a.Rotary}{MaskText(a)}{(a.Window.Kind == AttentionWindowKind.Sliding ? $", {a.Window}" : "")}{(a.Softcap is double cap ? $", softcap {cap:G4}" : "")}");
            lines.Add($"                {qkv}");
            if (a.LowRank is { } lowRank)
                lines.Add($"  low rank      q_a {LinearText(lowRank.QueryDown)} -> {NormText(lowRank.QueryDownNorm)} | kv_a {LinearText(lowRank.KvDown)} -> {NormText(lowRank.KvDownNorm)}");
            if (a.PositionBias is { } pb) lines.Add($"  position bias {PositionBiasText(pb)}");
            if (a.QueryNorm is not null || a.KeyNorm is not null) lines.Add($"  qk norm       q {QkNormText(a.QueryNorm)} | k {QkNormText(a.KeyNorm)}");
            if (a.OutputGate is { } gate) lines.Add($"  output gate   {Camel(gate.Activation)}({gate.GateInput.Name}) from {(gate.Source == GateSource.PackedWithQuery ? "the q projection (packed)" : LinearText(gate.Linear))} -> {gate.Output.Name}");
            lines.Add($"  o proj        {LinearText(a.Output)}");
            if (a.Cache is { } c) lines.Add($"  kv cache      {KvText(c)}");
            }
            if (b.PostAttentionNorm is not null) lines.Add($"  attn out norm {NormText(b.PostAttentionNorm)}");
            lines.Add($"  {(b.Attention is null ? "mixer residual" : "attn residual")} {b.AttentionResidual?.ToString() ?? "-"}");
            if (b.CrossAttention is { } cross) AppendCross(lines, cross);
            lines.Add($"  ffn norm      {NormText(b.FfnNorm)}");
            if (b.Ffn is { } f)
            {
                lines.Add($"  ffn           {f.Kind.Name()} {f.Activation.Name()}: {(f.Gate is null ? "" : $"gate {LinearText(f.Gate)} | ")}up {LinearText(f.Up)} | down {LinearText(f.Down)}");
                lines.Add($"  down input    {f.DownInput.Name}");
            }
            else if (b.Moe is { } moe) AppendMoe(lines, moe);
            else if (b.OpaqueFfn is { } of) AppendSublayer(lines, "ffn", of);
            else lines.Add("  ffn           -");
            if (b.PostFfnNorm is not null) lines.Add($"  ffn out norm  {NormText(b.PostFfnNorm)}");
            lines.Add($"  residual out  {b.ResidualOut}");
            if (s.EncoderStack is { } enc && b.Index == enc.BlockCount - 1) AppendEncoderEnd(lines, enc);
        }
        lines.Add($"final norm      {NormText(s.FinalNorm)}");
        lines.Add($"lm head         {LinearText(s.LmHead)}");
        if (s.LogitSoftcap is { } soft) lines.Add($"logit softcap   {soft.Cap:G4} * tanh(logits / {soft.Cap:G4}) -> {soft.Output.Name}");
        if (s.ClassifierHead is { } classifier) lines.Add($"classifier head {LinearText(classifier)} ({classifier.OutFeatures} classes)");
        AppendShared(lines, s.SharedInitializers);
        if (s.Branches is { } branches) AppendBranches(lines, branches);
        foreach (var h in s.Hints) lines.Add($"hint: {HintText(h)}");
        if (explain)
        {
            lines.Add("Rule trace (matches, best near miss):");
            AppendTrace(lines, result);
        }
        return lines.ToString();
    }

    private static void AppendMoe(EscapedLines lines, MoeRole m)
    {
        lines.Add($"  ffn           moe {(m.Form == MoeForm.Fused ? m.Op : "decomposed (TopK)")}: {m.NumExperts?.ToString() ?? "?"} experts, top-{m.TopK?.ToString() ?? "?"}, {m.Activation}");
        lines.Add($"    router      {LinearText(m.Router)}");
        if (m.Form == MoeForm.Fused)
            lines.Add($"    experts     {(m.FusedGateUp ? $"gate+up {m.Up}" : $"{(m.Gate is null ? "" : $"gate {m.Gate} | ")}up {m.Up}")} | down {m.Down}");
        for (int e = 0; e < m.Experts.Count; e++)
            lines.Add($"    expert {e,-4} {(m.Experts[e].Gate is { } g ? $"gate {LinearText(g)} | " : "")}up {LinearText(m.Experts[e].Up)} | down {LinearText(m.Experts[e].Down)}");
        if (m.SharedExpert is { } s)
            lines.Add($"    shared      {(s.Gate is { } g ? $"gate {LinearText(g)} | " : "")}up {LinearText(s.Up)} | down {LinearText(s.Down)}{(m.SharedExpertGate is { } sg ? $" (gated by {LinearText(sg)})" : "")}");
        lines.Add($"  moe output    {m.Output.Name}");
    }

    /// <summary>An opaque sublayer: its kind and core, linears by the tensor they read, output projection, states.</summary>
    private static void AppendSublayer(EscapedLines lines, string label, OpaqueSublayer o)
    {
        lines.Add($"  {label,-13} {KindName(o.Kind)} {o.Form}: input {o.Input.Name} -> {o.Output.Name}");
        foreach (var g in o.InputProjections)
            lines.Add($"    reads {g.Reads.Name}{(g.Norm is null ? "" : $" (norm {g.Norm.Gain.Name})")}: {string.Join(" | ", g.Linears.Select(LinearText))}");
        lines.Add($"    out proj    {LinearText(o.OutputProjection)}");
        if (o.InnerNorms.Count > 0) lines.Add($"    inner norms {string.Join(" | ", o.InnerNorms.Select(NormText))}");
        if (o.States.Count > 0)
            lines.Add($"    states      {string.Join(", ", o.States.Select(st => $"{st.Kind.Name()} {st.Past?.Name ?? "-"} -> {st.Present?.Name ?? "-"}"))}");
    }

    /// <summary>One line per shared initializer: the roles that read it, blocks collapsed into ranges.</summary>
    private static void AppendShared(EscapedLines lines, IReadOnlyList<SharedInitializer> shared)
    {
        if (shared.Count == 0) return;
        lines.Add("shared initializers (one tensor read by several roles: editing it for one edits all):");
        foreach (var x in shared)
        {
            var roles = x.Uses.GroupBy(u => u.Role).Select(g => g.Any(u => u.Block is null) ? g.Key : $"{g.Key} ({Blocks(g.Select(u => u.Block!.Value))})");
            lines.Add($"  {x.Initializer.Name}: {x.Uses.Count} roles: {string.Join(", ", roles)}");
        }
    }

    /// <summary>"block 3", "blocks 0-4", "blocks 0, 2, 5-7".</summary>
    public static string Blocks(IEnumerable<int> indices)
    {
        var sorted = indices.Distinct().Order().ToList();
        var parts = new List<string>();
        for (int i = 0; i < sorted.Count;)
        {
            int j = i;
            while (j + 1 < sorted.Count && sorted[j + 1] == sorted[j] + 1) j++;
            parts.Add(j == i ? $"{sorted[i]}" : $"{sorted[i]}-{sorted[j]}");
            i = j + 1;
        }
        return (sorted.Count == 1 ? "block " : "blocks ") + string.Join(", ", parts);
    }

    private static void AppendTrace(EscapedLines lines, RecognitionResult result)
    {
        foreach (var r in result.Trace.Rules)
        {
            lines.Add($"  [{r.Category}] {r.Rule}: {r.Matches} match(es){(r.Matches == 0 && r.NearMiss is { } m ? $"; near miss rooted at '{m.Root.Name}', {m}" : "")}");
            foreach (var n in r.Notes) lines.Add($"      note: {n}");
        }
    }

    private static string NormText(NormRole? n) => n is null ? "-" :
        $"{n.Form.Name()}{(n.GainForm == NormGainForm.OnePlusGain ? " (1 + gain)" : "")} gain {n.Gain.Name}{(n.Bias is null ? "" : $" bias {n.Bias.Name}")}{(n.Epsilon is double e ? $" eps {e:G3}" : "")} -> {n.Output.Name}";

    private static string LinearText(LinearRole? l) => l is null ? "-" :
        $"{l.Weight.Name} [{l.InFeatures}->{l.OutFeatures}]{(l.Form == LinearForm.MatMul ? "" : $" {l.Form.Name()}")}{(l.Layout == WeightLayout.OutIn ? " (out,in)" : "")}{(l.Bias is null ? "" : " +bias")}{(l.Quantized ? " quantized" : "")}{SelectionText(l.Selection)}";

    private static string SelectionText(WeightSelection? s) => s is null ? "" :
        $", slice {(s.IndexValue is long i ? i.ToString(System.Globalization.CultureInfo.InvariantCulture) : s.Index.Name)} of {s.Count} (Gather axis {s.Axis})";
}
