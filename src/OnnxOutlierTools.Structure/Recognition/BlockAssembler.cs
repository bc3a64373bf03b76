using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Pairs attention units with the FFN that follows, finds each sublayer's residual join and the
/// norms around it, and decides pre-norm vs post-norm from where the residual branch starts.</summary>
internal sealed partial class BlockAssembler
{
    private readonly Graph _graph;
    private readonly LinearIndex _linears;
    private readonly List<NormRole> _norms;
    private readonly List<AttentionRole> _attentions;
    private readonly List<FfnRole> _ffns;
    private readonly RecognitionTrace _trace;
    private readonly Dictionary<Node, int> _position = [];
    private readonly Dictionary<Value, NormRole> _normByOutput = [];
    private readonly Matcher? _matcher;

    public BlockAssembler(Graph graph, LinearIndex linears, List<NormRole> norms, List<AttentionRole> attentions, List<FfnRole> ffns, RecognitionTrace trace,
        Matcher? matcher = null)
    {
        (_graph, _linears, _norms, _attentions, _ffns, _trace, _matcher) = (graph, linears, norms, attentions, ffns, trace, matcher);
        for (int i = 0; i < graph.Nodes.Count; i++) _position[graph.Nodes[i]] = i;
        foreach (var n in norms) _normByOutput.TryAdd(n.Output, n);
    }

    private int Pos(Node node) => _position.GetValueOrDefault(node, -1);

    /// <summary>Where a sublayer's output rejoins the residual stream: an Add, or a fused skip norm.</summary>
    private sealed record Join(Node Node, Value? Residual, TensorRef Sum, NormRole? SkipNorm);

    private Join? ResidualJoin(Value sublayerOutput)
    {
        foreach (var (node, index, _) in GraphWalk.Consumers(sublayerOutput))
        {
            if (node.Is("Add") && node.Output(0) is { } sum)
            {
                var other = node.Input(1 - index);
                if (other is not null && ConstantResolver.Resolve(other) is null) return new Join(node, other, TensorRef.Of(sum), null);
            }
            if (_norms.FirstOrDefault(n => n.Skip is not null && n.OutputNode == node) is { } skip && index is 0 or 1)
                return new Join(node, node.Input(1 - index), skip.ResidualSum!, skip);
        }
        return null;
    }

    private NormRole? NormFeeding(Value input) => _normByOutput.GetValueOrDefault(GraphWalk.Upstream(input));

    private NormRole? NormReading(Join join) =>
        join.SkipNorm ?? (join.Sum.Value is { } sum ? _norms.FirstOrDefault(n => GraphWalk.SameTensor(n.Input.Value, sum)) : null);

    public List<BlockRole> Assemble()
    {
        // Cross-attention (keys/values from the encoder output) is no block of its own: it is attached to the block it sits in.
        var attentions = _attentions.Where(a => a.Output is not null && !IsCrossAttention(a)).OrderBy(a => Pos(a.Output!.Node)).ToList();
        var ffns = _ffns.OrderBy(f => Pos(f.Down.Node)).ToList();
        var blocks = new List<BlockRole>();
        for (int i = 0; i < attentions.Count; i++)
        {
            var a = attentions[i];
            // A block's FFN lies between its own Q/K/V projections and the next block's (after the attention in
            // sequential blocks, anywhere after the projections in parallel ones).
            int start = Projections(a).Min(n => Pos(n));
            int end = i + 1 < attentions.Count ? Projections(attentions[i + 1]).Min(n => Pos(n)) : int.MaxValue;
            var ffn = ffns.FirstOrDefault(f => Pos(f.Down.Node) > start && Pos(f.Down.Node) < end);
            if (ffn is null) { _trace.Note("Blocks", $"attention {a.CoreNodes[^1].Describe()} is followed by no FFN"); continue; }
            var block = Build(blocks.Count, a, ffn);
            if (block is not null) blocks.Add(block);
        }
        return AttachCrossAttention(blocks);
    }

    private static IEnumerable<Node> Projections(AttentionRole a) =>
        new[] { a.Query, a.Key, a.ValueProjection, a.PackedQkv, a.LowRank?.QueryDown, a.LowRank?.KvDown }.Where(l => l is not null).Select(l => l!.Node).DefaultIfEmpty(a.CoreNodes[0]);

    private BlockRole? Build(int index, AttentionRole attention, FfnRole ffn)
    {
        var postAttention = PostSublayerNorm(attention.Output!.Output);
        var postFfn = PostSublayerNorm(ffn.Down.Output);
        var attnJoin = ResidualJoin(postAttention?.Output ?? attention.Output!.Output);
        var ffnJoin = ResidualJoin(postFfn?.Output ?? ffn.Down.Output);
        if (attnJoin is null || ffnJoin is null)
        {
            _trace.Note("Blocks", $"block {index}: no residual {(attnJoin is null ? "add after the attention output projection" : "add after the FFN down projection")}");
            return null;
        }
        // Multi-head latent attention reads the block input through its down-projections (q_a, kv_a).
        var qkvInput = attention.LowRank?.QueryDown.Input ?? (attention.PackedQkv ?? attention.Query)!.Input;
        var block = OutputNormsOnly(index, attention, ffn, attnJoin, ffnJoin, qkvInput, postAttention, postFfn)
            ?? Sequential(index, attention, ffn, attnJoin, ffnJoin, qkvInput);
        return block is null ? null : block with { PostAttentionNorm = postAttention, PostFfnNorm = postFfn };
    }

    private BlockRole? Sequential(int index, AttentionRole attention, FfnRole ffn, Join attnJoin, Join ffnJoin, Value qkvInput)
    {
        if (Parallel(index, attention, ffn, attnJoin, ffnJoin, qkvInput) is { } parallel) return parallel;
        bool postNorm = GraphWalk.SameTensor(attnJoin.Residual, qkvInput);
        if (postNorm)
        {
            var attentionNorm = NormReading(attnJoin);
            var ffnNorm = NormReading(ffnJoin);
            return new BlockRole
            {
                Index = index,
                Placement = NormPlacement.PostNorm,
                AttentionNorm = attentionNorm,
                Attention = attention,
                AttentionResidual = attentionNorm is null ? attnJoin.Sum : TensorRef.Of(attentionNorm.Output),
                FfnNorm = ffnNorm,
                Ffn = ffn,
                ResidualIn = TensorRef.Of(qkvInput),
                ResidualOut = ffnNorm is null ? ffnJoin.Sum : TensorRef.Of(ffnNorm.Output),
            };
        }
        return new BlockRole
        {
            Index = index,
            Placement = NormPlacement.PreNorm,
            AttentionNorm = NormFeeding(qkvInput),
            Attention = attention,
            AttentionResidual = attnJoin.Sum,
            FfnNorm = NormFeeding(ffn.Up.Input),
            Ffn = ffn,
            ResidualIn = TensorRef.Of(attnJoin.Residual!),
            ResidualOut = ffnJoin.Sum,
        };
    }

    /// <summary>x + attn(norm(x)) + ffn(norm'(x)): the branches are summed first ((attn + ffn) + x), or one
    /// after the other while the second still reads the block input ((x + attn) + ffn).</summary>
    private BlockRole? Parallel(int index, AttentionRole attention, FfnRole ffn, Join attnJoin, Join ffnJoin, Value qkvInput)
    {
        var attentionNorm = NormFeeding(qkvInput);
        var ffnNorm = NormFeeding(ffn.Up.Input);
        // A skip norm normalizes input + skip, i.e. it is itself a residual join: such blocks are sequential.
        bool ReadsBlockInput(Value sublayerInput, NormRole? norm, Value? x) =>
            norm?.Skip is null && GraphWalk.SameTensor(norm?.Input.Value ?? sublayerInput, x);
        // The three forms differ only in where the block's residual stream enters and leaves.
        BlockRole Block(TensorRef residualIn, TensorRef residualOut) => new()
        {
            Index = index,
            Placement = NormPlacement.PreNorm,
            AttentionNorm = attentionNorm,
            Attention = attention,
            FfnNorm = ffnNorm,
            Ffn = ffn,
            ResidualIn = residualIn,
            ResidualOut = residualOut,
            ParallelResidual = true,
        };

        if (GraphWalk.SameTensor(attnJoin.Residual, ffn.Down.Output) && attnJoin.Sum.Value is { } branches)
        {
            if (ResidualJoin(branches) is not { Residual: { } x } outer) return null;
            return Block(TensorRef.Of(x), outer.Sum);
        }
        if (attnJoin.Sum.Value is { } afterAttention && GraphWalk.SameTensor(ffnJoin.Residual, afterAttention)
            && ReadsBlockInput(ffn.Up.Input, ffnNorm, attnJoin.Residual))
            return Block(TensorRef.Of(attnJoin.Residual!), ffnJoin.Sum);
        if (ffnJoin.Sum.Value is { } afterFfn && GraphWalk.SameTensor(attnJoin.Residual, afterFfn)
            && ReadsBlockInput(qkvInput, attentionNorm, ffnJoin.Residual))
            return Block(TensorRef.Of(ffnJoin.Residual!), attnJoin.Sum);
        return null;
    }

    // ---- model level ----------------------------------------------------------------------------------

    public ModelStructure ModelLevel(List<BlockRole> blocks, EmbeddingRole? embedding, string? nestedIn, ModelFolderFacts? folder)
    {
        var last = blocks[^1];
        var placement = blocks[0].Placement;
        var blockNorms = blocks.SelectMany(b => b.Norms.Select(n => n.Norm)).ToHashSet();
        // The last block's last sublayer output: the FFN down projection, or what an opaque sublayer adds to the stream.
        var lastBranch = last.Ffn?.Down.Output ?? last.Moe?.Output ?? last.OpaqueFfn?.Output ?? last.Mixer?.Output ?? last.Attention?.Output?.Output;
        int lastDown = lastBranch?.Producer is { } lastNode ? Pos(lastNode) : -1;

        NormRole? finalNorm = null;
        if (placement == NormPlacement.PreNorm && lastBranch is not null)
        {
            // A sandwich norm (Gemma) on the FFN output stands between the down projection and the residual add.
            var join = ResidualJoin(last.PostFfnNorm?.Output ?? lastBranch);
            finalNorm = join?.SkipNorm is { } skip && !blockNorms.Contains(skip) ? skip
                : _norms.Where(n => !blockNorms.Contains(n) && Pos(n.OutputNode) > lastDown)
                    .FirstOrDefault(n => last.ResidualOut.Value is { } r && (GraphWalk.SameTensor(n.Input.Value, r) || GraphWalk.SameTensor(n.Skip, r)));
        }

        var blockLinears = blocks.SelectMany(b => new[] { b.Attention?.Query, b.Attention?.Key, b.Attention?.ValueProjection, b.Attention?.PackedQkv, b.Attention?.Output, b.Ffn?.Gate, b.Ffn?.Up, b.Ffn?.Down })
            .Concat(blocks.SelectMany(b => new[] { b.Attention?.LowRank?.QueryDown, b.Attention?.LowRank?.KvDown, b.Attention?.OutputGate?.Linear }.OfType<LinearRole>()))
            .Concat(blocks.SelectMany(b => (b.Mixer?.Linears ?? []).Concat(b.OpaqueFfn?.Linears ?? []).Concat(MoeLinears(b.Moe))))
            .Where(l => l is not null).ToHashSet();
        var heads = _linears.All.Where(l => !blockLinears.Contains(l) && Pos(l.Node) > lastDown && ReachesOutput(l.Output)).ToList();
        var lmHead = heads.FirstOrDefault(l => finalNorm is not null && GraphWalk.SameTensor(l.Input, finalNorm.Output)) ?? heads.FirstOrDefault();
        var classifier = ClassifierHeads.Find(_linears.All.Where(l => !blockLinears.Contains(l) && Pos(l.Node) > lastDown), embedding);
        if (classifier is not null && (lmHead is null || lmHead == classifier)) lmHead = null;

        var inputs = FindInputs(embedding);
        bool hasCache = blocks.Any(b => b.Attention?.Cache is not null || b.Mixer?.States.Count > 0);
        var encoderStack = EncoderStack(blocks, blockNorms);
        var architecture = encoderStack is not null ? ModelArchitecture.EncoderDecoder : Architecture(blocks, placement, hasCache, lmHead);
        var shared = SharedInitializerFinder.Find(blocks, embedding, finalNorm, lmHead);
        var hints = Hints(blocks, architecture, inputs, embedding, lmHead, folder);
        if (shared.Count > 0) hints.Add(new SharedInitializersHint(shared));
        var embeddingScale = EmbeddingScale(embedding);
        var softcap = LogitSoftcap(lmHead);
        if (GemmaHint(blocks, embeddingScale) is { } gemma) hints.Add(gemma);
        return new ModelStructure
        {
            Graph = _graph,
            NestedIn = nestedIn,
            Architecture = architecture,
            Placement = placement,
            Blocks = blocks,
            Embedding = embedding,
            FinalNorm = finalNorm,
            LmHead = lmHead,
            Inputs = inputs,
            Hints = hints,
            SharedInitializers = shared,
            EmbeddingScale = embeddingScale,
            LogitSoftcap = softcap,
            ClassifierHead = classifier,
            EncoderStack = encoderStack,
        };
    }

    /// <summary>The leading blocks the cross-attentions' encoder output is computed from, when the encoder is in this graph.</summary>
    private EncoderStackRole? EncoderStack(List<BlockRole> blocks, HashSet<NormRole> blockNorms)
    {
        if (blocks.Select(b => b.CrossAttention?.EncoderOutput).FirstOrDefault(v => v is not null) is not { } output) return null;
        int count = blocks.TakeWhile(b => b.CrossAttention is null && b.ResidualOut.Value is { } r && DependsOn(output, r)).Count();
        if (count == 0) return null;
        var norm = _norms.FirstOrDefault(n => !blockNorms.Contains(n) && GraphWalk.SameTensor(n.Output, output));
        return new EncoderStackRole { BlockCount = count, Output = output, FinalNorm = norm };
    }

    /// <summary>A post-norm stack is an encoder (BERT) unless it has a cache or cross-attention (BART's decoder is a decoder
    /// even without a cache). A pre-norm stack is a decoder unless nothing says so: no cache, no cross-attention, no LM head
    /// and no attention shown causal (T5's and Whisper's encoders; GPT-2's base model has no LM head but its causal buffer).</summary>
    private static ModelArchitecture Architecture(List<BlockRole> blocks, NormPlacement placement, bool hasCache, LinearRole? lmHead)
    {
        bool cross = blocks.Any(b => b.CrossAttention is not null);
        if (hasCache || cross) return ModelArchitecture.Decoder;
        if (placement == NormPlacement.PostNorm) return ModelArchitecture.Encoder;
        bool causal = blocks.Any(b => b.Attention is { } a && CausalEvidence.IsCausal(a));
        return lmHead is not null || causal || blocks.All(b => b.Attention is null) ? ModelArchitecture.Decoder : ModelArchitecture.Encoder;
    }

    private static IEnumerable<LinearRole> MoeLinears(MoeRole? moe) => moe is null ? [] :
        new[] { moe.Router, moe.SharedExpertGate, moe.SharedExpert?.Gate, moe.SharedExpert?.Up, moe.SharedExpert?.Down }
            .Concat(moe.Experts.SelectMany(e => new[] { e.Gate, e.Up, e.Down })).OfType<LinearRole>();

    private static bool ReachesOutput(Value value)
    {
        var v = value;
        for (int i = 0; i < 8; i++)
        {
            if (v.IsGraphOutput) return true;
            var next = v.Uses.Select(u => u.Node).FirstOrDefault(n => n is not null && (GraphWalk.IsLayoutOp(n) || n.Is("Add") || IsSoftcapStep(n)));
            if (next?.Output(0) is not { } o) return false;
            v = o;
        }
        return false;
    }

    private ModelInputs FindInputs(EmbeddingRole? embedding)
    {
        Value? Named(params string[] parts) => GraphWalk.ScopeInputs(_graph).FirstOrDefault(i => !i.IsInitializer && parts.Any(p => i.Name.Contains(p, StringComparison.OrdinalIgnoreCase)));
        var ids = embedding?.TokenIds is { IsGraphInput: true } fromEmbedding ? fromEmbedding : Named("input_ids");
        return new ModelInputs(ids, Named("attention_mask", "input_mask", "mask"), Named("position_ids", "position"), Named("token_type", "segment"));
    }

    private static List<StructureHint> Hints(List<BlockRole> blocks, ModelArchitecture architecture, ModelInputs inputs, EmbeddingRole? embedding, LinearRole? lmHead, ModelFolderFacts? folder)
    {
        var hints = new List<StructureHint>();
        if (architecture != ModelArchitecture.Encoder)
        {
            hints.Add(folder?.BosTokenId is { } b ? new BosTokenHint(b.Id, b.File) : new NoBosTokenHint());
            int cached = blocks.Count(b => b.Attention?.Cache is not null);
            if (cached > 0) hints.Add(new KvCacheHint(cached, blocks.Count, blocks.Any(b => b.Attention?.Cache?.Stacked == true)));
            if (inputs.PositionIds is not null) hints.Add(new PositionIdsHint(inputs.PositionIds));
        }
        else hints.Add(new EncoderSpecialTokensHint());
        // Problems lists only the files that have one.
        foreach (var bad in folder?.Problems ?? []) hints.Add(new UnusableFolderFileHint(bad.File, bad.Problem!));
        if (lmHead is not null && embedding is not null && lmHead.Weight == embedding.TokenTable) hints.Add(new TiedLmHeadHint(embedding.TokenTable));
        return hints;
    }

}
