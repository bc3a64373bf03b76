using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>A decoder whose token embedding lives in another model: the graph takes <see cref="InputsEmbeds"/>
/// ([batch, sequence, hidden]) instead of token ids. <see cref="HiddenSize"/> is the width the decoder expects (the input's
/// last dimension, else its first norm's gain). When the embedding model was given (<c>inspect --embedding-model</c>),
/// <see cref="Linked"/> holds what was recognized there.</summary>
public sealed record ExternalEmbeddingRole(Value InputsEmbeds, long? HiddenSize)
{
    public LinkedEmbedding? Linked { get; init; }
}

/// <summary>The embedding recognized in a separate embedding model: its path, the role (null when none was found there),
/// its output, the table's width and whether it matches the decoder's hidden size; <see cref="Problem"/> says what did not fit
/// (null when all did).</summary>
public sealed record LinkedEmbedding(string ModelPath, EmbeddingRole? Embedding, Value? Output, long? HiddenSize, bool HiddenSizeMatches, EmbeddingLinkProblem? Problem);

/// <summary>Why an embedding model does not fit the decoder it was given for.</summary>
public enum EmbeddingLinkProblem
{
    /// <summary>No Gather of a token table by integer ids in the embedding model.</summary>
    NoTokenEmbedding,
    /// <summary>The table's or the decoder's hidden size is unknown.</summary>
    HiddenSizeUnknown,
    /// <summary>The table is not as wide as the decoder's inputs_embeds.</summary>
    WidthMismatch,
    /// <summary>The embedding output does not reach a graph output of the embedding model.</summary>
    NotAGraphOutput,
}
