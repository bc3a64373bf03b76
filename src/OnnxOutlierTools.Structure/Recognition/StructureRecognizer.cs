using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>The outcome of recognition: the structure (null when no transformer blocks were found), a
/// one-line message saying what was found or why not, and the tracer's record.</summary>
public sealed record RecognitionResult(ModelStructure? Structure, string Message, RecognitionTrace Trace, IReadOnlyList<string> GraphsSearched)
{
    public bool Recognized => Structure is not null;
}

/// <summary>Recognizes transformer roles in any exporter's graph: rules find norms, linears and FFN
/// activations; attention units are traced from their cores to their projections; blocks are assembled
/// along the residual stream. When the main graph has no blocks, nested graphs are searched (the
/// decoder inside a BeamSearch node).</summary>
public static class StructureRecognizer
{
    /// <param name="modelFolder">Where to read config.json / genai_config.json; default the model file's folder
    /// (read once, by <see cref="Model.FolderFacts"/>).</param>
    public static RecognitionResult Recognize(Model model, string? modelFolder = null)
    {
        var searched = new List<string>();
        RecognitionResult? first = null;
        var folder = modelFolder is null ? model.FolderFacts : ModelFolderFacts.Read(modelFolder);
        foreach (var graph in model.Graph.SelfAndSubgraphs())
        {
            string where = graph.ParentNode is { } owner
                ? $"{owner.Describe()} attribute '{owner.Attributes.First(a => a.Graphs.Contains(graph)).Name}'"
                : "main graph";
            searched.Add($"{where} ('{graph.Name}', {graph.Nodes.Count} nodes)");
            var result = RecognizeGraph(graph, graph.ParentNode is null ? null : where, folder);
            if (result.Recognized) return MergedBranchRecognizer.Attach(result, folder) with { GraphsSearched = searched };
            first ??= result;
        }
        return first! with { GraphsSearched = searched };
    }

    public static RecognitionResult RecognizeGraph(Graph graph, string? nestedIn = null, ModelFolderFacts? folder = null)
    {
        var trace = new RecognitionTrace();
        var matcher = new Matcher(graph);

        var linears = new LinearIndex(LinearRules.Find(matcher));
        trace.Absorb("linear", matcher, LinearRules.All);

        var norms = NormRules.Find(matcher);
        trace.Absorb("norm", matcher, NormRules.All);

        var attentionRecognizer = new AttentionRecognizer(graph, linears, trace, matcher, norms);
        var attentions = LowRankAttention.Attach(attentionRecognizer.Recognize(), linears, norms, trace);
        trace.Absorb("attention", matcher, attentionRecognizer.Rules);

        var ffnRules = FfnRules.Create(v => linears.ByOutput(v) is not null);
        var ffns = new List<FfnRole>();
        foreach (var down in linears.All.ToList())
        {
            var input = GraphWalk.Upstream(down.Input);
            foreach (var rule in ffnRules)
            {
                if (matcher.TryMatch(rule, input) is not { } match) continue;
                var found = rule.Build(match);
                LinearRole? Resolve(Value v) => linears.ByOutput(v) ?? (FfnRules.PackedPart(v) is { } whole ? linears.ByOutput(whole) : null);
                var up = Resolve(found.UpOutput)!;
                var gate = found.GateOutput is null ? null : Resolve(found.GateOutput);
                if (up == down || gate == down) continue;
                ffns.Add(new FfnRole { Kind = found.Kind, Activation = found.Activation, Gate = gate, Up = up, Down = down, DownInput = down.Input, ActivationNodes = found.Nodes });
                break;
            }
        }
        trace.Absorb("ffn", matcher, ffnRules);

        // Mixture-of-experts FFNs; their experts and shared experts are not block FFNs of their own.
        var moeRecognizer = new MoeRecognizer(graph, linears, ffns, trace);
        var moes = moeRecognizer.Recognize();
        var blockFfns = ffns.Where(f => !moeRecognizer.Claimed.Contains(f)).ToList();

        var embeddingRules = EmbeddingRules.Create(EmbeddingRules.TokenIds(graph));
        var embedding = EmbeddingRules.Find(matcher, embeddingRules, out int candidates);
        trace.Absorb("embedding", matcher, embeddingRules);
        // One summary line above the Embedding/* rules: which match was taken, or where to look for why none was.
        trace.Count("Embedding", embedding is not null, "embedding");
        trace.Note("Embedding", embedding is null
            ? "no token embedding found (a model fed inputs_embeds has none); each Embedding/* rule's near miss says why it did not match"
            : $"took {embedding.Form.Name()} at '{embedding.Output.Name}' (token table '{embedding.TokenTable.Name}'){(candidates > 1 ? $", the first of {candidates} candidates" : "")}");

        var assembly = new BlockAssembler(graph, linears, norms, attentions, blockFfns, trace, matcher);
        var blocks = new FallbackAssembler(graph, linears, norms, attentions, blockFfns, trace) { Moes = moes }.Complete(assembly.Assemble(), embedding);
        trace.Absorb("blocks", matcher, assembly.Rules);
        string counts = $"{attentions.Count} attention unit(s), {ffns.Count} FFN(s), {norms.Count} norm(s), {linears.All.Count} linear layer(s)";
        if (blocks.Count == 0)
        {
            string message = $"no transformer blocks recognized in graph '{graph.Name}': found {counts}";
            return new RecognitionResult(null, message, trace, []);
        }
        var structure = SplitEmbeddingRecognizer.Attach(assembly.ModelLevel(blocks, embedding, nestedIn, folder));
        trace.Absorb("model", matcher, assembly.ModelRules);
        return new RecognitionResult(structure, $"{blocks.Count} {structure.Placement.Name()} {structure.Architecture.Name()} block(s) in graph '{graph.Name}' ({counts})", trace, []);
    }
}
