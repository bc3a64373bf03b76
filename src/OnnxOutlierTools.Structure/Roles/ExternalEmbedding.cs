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
/// its output, the table's width and whether it matches the decoder's hidden size; <see cref="Problem"/> says what did not fit.</summary>
public sealed record LinkedEmbedding(string ModelPath, EmbeddingRole? Embedding, Value? Output, long? HiddenSize, bool HiddenSizeMatches, string? Problem);
