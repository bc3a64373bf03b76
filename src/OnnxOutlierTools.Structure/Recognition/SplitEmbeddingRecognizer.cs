using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Decoders split across files (#7 item 6): a decoder fed <c>inputs_embeds</c> records that its embedding lives
/// in another model; <see cref="Link"/> recognizes that model's token embedding and checks its width against the decoder.</summary>
public static class SplitEmbeddingRecognizer
{
    /// <summary>The structure with <see cref="ModelStructure.ExternalEmbedding"/> and a hint, when it has no token
    /// embedding and a floating-point graph input named like <c>inputs_embeds</c>.</summary>
    public static ModelStructure Attach(ModelStructure s)
    {
        if (s.Embedding is not null) return s;
        var input = GraphWalk.ScopeInputs(s.Graph).FirstOrDefault(i => !i.IsInitializer && i.ElementType?.IsFloatingPoint() == true
            && i.Name.Contains("embeds", StringComparison.OrdinalIgnoreCase));
        if (input is null) return s;
        long? hidden = input.Shape is { Count: 3 } shape && shape[2].Value is long d ? d : null;
        hidden ??= s.Blocks.Select(b => b.Norms.FirstOrDefault()?.Norm.Gain.Shape).FirstOrDefault(g => g is { Count: 1 })?[0].Value;
        var role = new ExternalEmbeddingRole(input, hidden);
        return s with { ExternalEmbedding = role, Hints = [.. s.Hints, new ExternalEmbeddingHint(role)] };
    }

    /// <summary>Recognizes the token embedding of <paramref name="embeddingModel"/> (main graph or a nested one) and links it to
    /// the decoder's <c>inputs_embeds</c>: the embedding output should be a graph output as wide as the decoder's hidden size.</summary>
    public static RecognitionResult Link(RecognitionResult decoder, Model embeddingModel, string embeddingPath)
    {
        if (decoder.Structure is not { } s) return decoder;
        if (s.ExternalEmbedding is not { } external)
            return decoder with { Structure = s with { Hints = [.. s.Hints, new EmbeddingModelUnusedHint(embeddingPath)] } };
        EmbeddingRole? found = null;
        foreach (var graph in embeddingModel.Graph.SelfAndSubgraphs())
        {
            var matcher = new Matcher(graph);
            found = EmbeddingRules.Find(matcher, EmbeddingRules.Create(EmbeddingRules.TokenIds(graph)), out _);
            if (found is not null) break;
        }
        LinkedEmbedding linked;
        if (found is null)
            linked = new(embeddingPath, null, null, null, false, EmbeddingLinkProblem.NoTokenEmbedding);
        else
        {
            var output = OutputOf(found.Output);
            long? width = found.TokenTable.Shape is { Count: 2 } t ? t[1].Value : null;
            bool matches = width is long w && external.HiddenSize is long h && w == h;
            EmbeddingLinkProblem? problem = width is null || external.HiddenSize is null ? EmbeddingLinkProblem.HiddenSizeUnknown
                : !matches ? EmbeddingLinkProblem.WidthMismatch
                : output is null ? EmbeddingLinkProblem.NotAGraphOutput : null;
            linked = new(embeddingPath, found, output, width, matches, problem);
        }
        return decoder with { Structure = s with { ExternalEmbedding = external with { Linked = linked }, Hints = [.. s.Hints, new EmbeddingLinkHint(external, linked)] } };
    }

    /// <summary>The graph output the embedding reaches (through a scale or layout ops), or null.</summary>
    private static Value? OutputOf(Value embedding)
    {
        var v = embedding;
        for (int i = 0; i < 6; i++)
        {
            if (v.IsGraphOutput) return v;
            var next = v.Uses.Select(u => u.Node).FirstOrDefault(n => n is not null && (GraphWalk.IsLayoutOp(n) || n.Is("Mul") || n.Is("Cast")));
            if (next?.Output(0) is not { } o) return null;
            v = o;
        }
        return null;
    }
}
