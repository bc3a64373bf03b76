using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>What a hint is about. The recognizer states the fact (<see cref="StructureHint"/> and its data); the words are
/// the report's (<c>StructureReport.HintText</c>).</summary>
public enum HintKind
{
    /// <summary>The BOS id read next to the model (config.json / genai_config.json).</summary>
    BosToken,
    /// <summary>No BOS id found next to a decoder.</summary>
    NoBosToken,
    KvCache,
    PositionIds,
    /// <summary>An encoder: massive activations sit at [CLS] and separators.</summary>
    EncoderSpecialTokens,
    /// <summary>A config file beside the model could not be used.</summary>
    UnusableFolderFile,
    /// <summary>The LM head reads the token-embedding table.</summary>
    TiedLmHead,
    SharedInitializers,
    /// <summary>Gemma-shaped sandwich norms: gains with an explicit (1 + gamma), or plain gains an exporter may have pre-added 1 to.</summary>
    SandwichNormGains,
    /// <summary>The token embedding lives in another model (inputs_embeds).</summary>
    ExternalEmbedding,
    /// <summary>--embedding-model was given to a decoder that does not need it.</summary>
    EmbeddingModelUnused,
    /// <summary>The embedding model given was recognized and linked, or what did not fit.</summary>
    EmbeddingLink,
    /// <summary>A merged decoder of which not every branch was recognized.</summary>
    MergedBranchesIncomplete,
    MergedDecoder,
}

/// <summary>A fact worth acting on that recognition found, for the report to word.</summary>
public abstract record StructureHint
{
    public abstract HintKind Kind { get; }
}

public sealed record BosTokenHint(int Id, string File) : StructureHint
{
    public override HintKind Kind => HintKind.BosToken;
}

public sealed record NoBosTokenHint : StructureHint
{
    public override HintKind Kind => HintKind.NoBosToken;
}

/// <summary><see cref="CachedLayers"/> of <see cref="Layers"/> blocks have a KV cache; <see cref="Stacked"/>: some stack key and value.</summary>
public sealed record KvCacheHint(int CachedLayers, int Layers, bool Stacked) : StructureHint
{
    public override HintKind Kind => HintKind.KvCache;
}

public sealed record PositionIdsHint(Value Input) : StructureHint
{
    public override HintKind Kind => HintKind.PositionIds;
}

public sealed record EncoderSpecialTokensHint : StructureHint
{
    public override HintKind Kind => HintKind.EncoderSpecialTokens;
}

/// <summary>A config file beside the model and what is wrong with it (as the I/O layer words it).</summary>
public sealed record UnusableFolderFileHint(string File, string Problem) : StructureHint
{
    public override HintKind Kind => HintKind.UnusableFolderFile;
}

public sealed record TiedLmHeadHint(Value Table) : StructureHint
{
    public override HintKind Kind => HintKind.TiedLmHead;
}

public sealed record SharedInitializersHint(IReadOnlyList<SharedInitializer> Shared) : StructureHint
{
    public override HintKind Kind => HintKind.SharedInitializers;
}

/// <summary>Sandwich norms (Gemma's signature): <see cref="ExplicitOnePlusGain"/> when the graph adds 1 to the gains; else plain
/// gains, with <see cref="SqrtHiddenEmbeddingScale"/> when the embedding is scaled by sqrt(hidden) too.</summary>
public sealed record SandwichNormGainsHint(bool ExplicitOnePlusGain, bool SqrtHiddenEmbeddingScale) : StructureHint
{
    public override HintKind Kind => HintKind.SandwichNormGains;
}

public sealed record ExternalEmbeddingHint(ExternalEmbeddingRole Embedding) : StructureHint
{
    public override HintKind Kind => HintKind.ExternalEmbedding;
}

public sealed record EmbeddingModelUnusedHint(string ModelPath) : StructureHint
{
    public override HintKind Kind => HintKind.EmbeddingModelUnused;
}

/// <summary>The embedding model linked to <see cref="Decoder"/>'s inputs_embeds (<see cref="LinkedEmbedding.Problem"/> null) or what did not fit.</summary>
public sealed record EmbeddingLinkHint(ExternalEmbeddingRole Decoder, LinkedEmbedding Linked) : StructureHint
{
    public override HintKind Kind => HintKind.EmbeddingLink;
}

/// <summary>A merged decoder's If of which only the <see cref="Recognized"/> branch attributes were recognized.</summary>
public sealed record MergedBranchesIncompleteHint(Node If, IReadOnlyList<string> Recognized, IReadOnlyList<string> Missed) : StructureHint
{
    public override HintKind Kind => HintKind.MergedBranchesIncomplete;
}

public sealed record MergedDecoderHint(MergedBranchesRole Branches) : StructureHint
{
    public override HintKind Kind => HintKind.MergedDecoder;
}
