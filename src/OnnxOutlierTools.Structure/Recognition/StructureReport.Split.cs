using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Decoders split across files in the layers JSON (<c>externalEmbedding</c>, additive) and the table.</summary>
public static partial class StructureReport
{
    /// <summary>The decoder takes <c>inputsEmbeds</c> (hidden size <c>hiddenSize</c>); its embedding is in another model,
    /// described by <c>linked</c> when that model was given (<c>--embedding-model</c>).</summary>
    public sealed record ExternalEmbeddingJson(string InputsEmbeds, long? HiddenSize, LinkedEmbeddingJson? Linked);

    /// <summary>The embedding found in the embedding model (<c>embedding</c> null when none), the graph output that feeds the
    /// decoder, the table width, whether it matches, and what did not fit (<c>problem</c>, null when all did).</summary>
    public sealed record LinkedEmbeddingJson(string ModelPath, EmbeddingJson? Embedding, string? Output, long? HiddenSize, bool HiddenSizeMatches, string? Problem);

    private static ExternalEmbeddingJson? External(ExternalEmbeddingRole? x) => x is null ? null : new(x.InputsEmbeds.Name, x.HiddenSize,
        x.Linked is not { } l ? null : new LinkedEmbeddingJson(l.ModelPath,
            l.Embedding is { } e ? new EmbeddingJson(e.Form.Name(), NodeOf(e.Node), e.TokenTable.Name, e.PositionTable?.Name, e.Output.Name, e.TokenTypeTable?.Name, e.TokenIds?.Name) : null,
            l.Output?.Name, l.HiddenSize, l.HiddenSizeMatches, ProblemText(x, l)));

    private static void AppendExternal(EscapedLines lines, ExternalEmbeddingRole x)
    {
        string hidden = x.HiddenSize is long h ? $" [{h}]" : "";
        if (x.Linked is not { } l) lines.Add($"  embedding     in another model: this graph takes {x.InputsEmbeds.Name}{hidden} (--embedding-model PATH reports it)");
        else if (l.Embedding is { } e)
            lines.Add($"  embedding     from {l.ModelPath}: {e.Form.Name()}: {e.TokenTable.Name} [{l.HiddenSize?.ToString() ?? "?"}] -> {l.Output?.Name ?? e.Output.Name} -> {x.InputsEmbeds.Name}{hidden}{(l.Problem is null ? "" : $"  MISMATCH: {ProblemText(x, l)}")}");
        else lines.Add($"  embedding     {l.ModelPath}: {ProblemText(x, l)}");
    }

    /// <summary>What did not fit between the decoder and the embedding model; null when all did.</summary>
    private static string? ProblemText(ExternalEmbeddingRole x, LinkedEmbedding l) => l.Problem switch
    {
        null => null,
        EmbeddingLinkProblem.NoTokenEmbedding => "no token embedding (Gather of a token table by integer ids) found in the embedding model",
        EmbeddingLinkProblem.HiddenSizeUnknown => "the hidden size of one side is unknown",
        EmbeddingLinkProblem.WidthMismatch => $"the token table is {l.HiddenSize} wide, the decoder's '{x.InputsEmbeds.Name}' is {x.HiddenSize}",
        EmbeddingLinkProblem.NotAGraphOutput => $"the embedding output '{l.Embedding?.Output.Name}' does not reach a graph output of the embedding model",
        _ => throw new ArgumentOutOfRangeException(nameof(l), l.Problem, null),
    };
}
