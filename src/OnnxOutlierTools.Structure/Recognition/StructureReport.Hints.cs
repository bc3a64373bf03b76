using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>The words of the hints: the recognizer returns <see cref="StructureHint"/> facts, this renders them (text table and
/// the layers JSON's <c>hints</c> strings).</summary>
public static partial class StructureReport
{
    public static string HintText(StructureHint hint) => hint switch
    {
        BosTokenHint b => $"bos_token_id {b.Id} (from {b.File}): start calibration windows with BOS; the first token is where massive activations and the attention sink live",
        NoBosTokenHint => "no bos_token_id found next to the model (config.json / genai_config.json): pass the BOS id to probes; the first token is where massive activations and the attention sink live",
        KvCacheHint k => $"KV cache on {k.CachedLayers} of {k.Layers} layers{(k.Stacked ? " (stacked key/value per layer)" : "")}: calibrate with an empty past and the whole window as one prompt",
        PositionIdsHint p => $"position ids are the input '{p.Input.Name}': a prepended constant sink shifts them by +1",
        EncoderSpecialTokensHint => "encoder: massive activations sit at the first token ([CLS]) and at separators; calibrate with the tokenizer's special tokens",
        UnusableFolderFileHint f => $"{f.File} beside the model {f.Problem}: its facts (BOS id, sizes) were not used",
        TiedLmHeadHint => "the LM head shares the token-embedding initializer: copy it before scaling one of them",
        SharedInitializersHint s => SharedText(s.Shared),
        SandwichNormGainsHint g => g.ExplicitOnePlusGain
            ? "sandwich norms with explicit (1 + gamma) gains (Gemma): a fold must write (1 + gamma) / s - 1 into the initializer"
            : $"sandwich norms{(g.SqrtHiddenEmbeddingScale ? " and a sqrt(hidden) embedding scale" : "")} (Gemma-style) with plain gains: if this is Gemma, the exporter pre-added 1 to gamma, so the initializers are the effective gains",
        ExternalEmbeddingHint e => $"no token embedding in this graph: it takes '{e.Embedding.InputsEmbeds.Name}'{(e.Embedding.HiddenSize is long h ? $" (hidden size {h})" : "")}, the embedding lives in another model; " +
            "pass it with --embedding-model to report it (probes of the embedding output and edits of the token table happen there)",
        EmbeddingModelUnusedHint u => $"--embedding-model '{u.ModelPath}' was given but this decoder has its own token embedding or no inputs_embeds input; it was not used",
        EmbeddingLinkHint l => l.Linked.Problem is null
            ? $"token embedding from '{l.Linked.ModelPath}': {l.Linked.Embedding!.Form.Name()} of '{l.Linked.Embedding.TokenTable.Name}' -> '{l.Linked.Output!.Name}' feeds '{l.Decoder.InputsEmbeds.Name}' (hidden size {l.Linked.HiddenSize} matches)"
            : $"embedding model '{l.Linked.ModelPath}': {ProblemText(l.Decoder, l.Linked)}",
        MergedBranchesIncompleteHint m => $"{m.If.Describe()}: only {string.Join(", ", m.Recognized)} was recognized ({string.Join(", ", m.Missed)} not): " +
            "an edit of this branch's roles may not reach the other",
        MergedDecoderHint m => MergedText(m.Branches),
        _ => throw new ArgumentOutOfRangeException(nameof(hint), hint, null),
    };

    /// <summary>Why sharing matters to the passes that edit these tensors (the tied-embedding case has its own hint).</summary>
    private static string SharedText(IReadOnlyList<SharedInitializer> shared)
    {
        string which = string.Join(", ", shared.Take(3).Select(s => $"'{s.Initializer.Name}' by {s.Uses.Count} roles")) + (shared.Count > 3 ? ", ..." : "");
        return $"{shared.Count} initializer(s) shared by several roles ({which}): folding a scale into one role's tensor changes every role " +
            "that shares it; give the role its own copy first (see 'shared initializers')";
    }

    private static string MergedText(MergedBranchesRole merged)
    {
        int shared = merged.Weights.Count(w => w.Shared), total = merged.Weights.Count;
        return $"merged decoder: {merged.If.Describe()} on '{merged.Condition?.Name}' runs {string.Join(" and ", merged.Branches.Select(b => $"{b.Attribute} ({b.Structure.Blocks.Count} blocks{(b.HasCache ? ", with past" : ", no past")})"))}; " +
            $"{shared} of {total} role weights are one initializer both read (an edit applies to both)" +
            (shared < total ? $", {total - shared} are per-branch copies (edit each branch)" : "") +
            (merged.SameLayout ? "" : "; the branches' blocks differ");
    }
}
