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
            l.Output?.Name, l.HiddenSize, l.HiddenSizeMatches, l.Problem));

    private static void AppendExternal(EscapedLines lines, ExternalEmbeddingRole x)
    {
        string hidden = x.HiddenSize is long h ? $" [{h}]" : "";
        if (x.Linked is not { } l) lines.Add($"  embedding     in another model: this graph takes {x.InputsEmbeds.Name}{hidden} (--embedding-model PATH reports it)");
        else if (l.Embedding is { } e)
            lines.Add($"  embedding     from {l.ModelPath}: {e.Form.Name()}: {e.TokenTable.Name} [{l.HiddenSize?.ToString() ?? "?"}] -> {l.Output?.Name ?? e.Output.Name} -> {x.InputsEmbeds.Name}{hidden}{(l.Problem is null ? "" : $"  MISMATCH: {l.Problem}")}");
        else lines.Add($"  embedding     {l.ModelPath}: {l.Problem}");
    }
}
