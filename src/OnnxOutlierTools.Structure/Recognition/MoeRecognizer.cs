using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Finds mixture-of-experts FFNs (<see cref="MoeRules"/>): fused com.microsoft MoE/QMoE nodes, and TopK-routed
/// sets of expert FFNs. The FFNs that are experts or shared experts are <see cref="Claimed"/>: the block assembler must
/// not pair an attention with one of them as if it were the block's FFN.</summary>
internal sealed class MoeRecognizer(Graph graph, LinearIndex linears, List<FfnRole> ffns, RecognitionTrace trace)
{
    public HashSet<FfnRole> Claimed { get; } = [];

    public List<MoeRole> Recognize()
    {
        var found = new List<MoeRole>();
        foreach (var node in graph.Nodes)
        {
            if (MoeRules.FusedOp(node) is { } op)
            {
                var role = Fused(node, op);
                trace.Count($"Moe/{op.Op}", role is not null, "moe");
                if (role is not null) found.Add(role);
            }
            else if (node.Is("TopK"))
            {
                var role = Decomposed(node);
                trace.Count("Moe/Decomposed", role is not null, "moe");
                if (role is not null) found.Add(role);
            }
        }
        return found;
    }

    // ---- fused --------------------------------------------------------------------------------------

    private MoeRole? Fused(Node node, FusedMoeOp op)
    {
        if (node.Input(0) is not { } x || node.Output(0) is not { } y) return null;
        var router = node.Input(1) is { } probs ? Router(probs) : null;
        long? hidden = router?.InFeatures ?? (x.Shape is { Count: > 0 } shape ? shape[^1].Value : null);
        int bits = op.Quantized ? (int)node.GetInt("expert_weight_bits", 4) : 0;
        ExpertWeights? Weights(int index, int? scales, int? bias, bool readsHidden)
        {
            if (node.Input(index) is not { } w || ConstantResolver.Resolve(w)?.Tensor is not { Dims.Count: 3 } t) return null;
            long pack = bits is > 0 and < 8 ? 8 / bits : 1;
            long e = t.Dims[0], a = t.Dims[1], b = t.Dims[2];
            // [E, out, in/pack] (current ORT layout) or [E, in, out/pack]; the hidden width tells which.
            bool outIn = readsHidden ? hidden is null || b * pack == hidden : hidden is null || a == hidden;
            var (inF, outF) = outIn ? (b * pack, a) : (a, b * pack);
            Value? Opt(int? i) => i is int k && node.Input(k) is { } v && ConstantResolver.Resolve(v) is { } c ? c.Value : null;
            return new ExpertWeights
            {
                Weight = ConstantResolver.Resolve(w)!.Value, Scales = Opt(scales), Bias = Opt(bias), Layout = outIn ? WeightLayout.OutIn : WeightLayout.InOut,
                Experts = e, InFeatures = inF, OutFeatures = outF, Bits = op.Quantized ? bits : null,
            };
        }
        var fc1 = Weights(op.Fc1, op.Fc1Scales, op.Fc1Bias, readsHidden: true);
        var fc2 = Weights(op.Fc2, op.Fc2Scales, op.Fc2Bias, readsHidden: false);
        var fc3 = Weights(op.Fc3, op.Fc3Scales, op.Fc3Bias, readsHidden: true);
        if (fc1 is null || fc2 is null)
        {
            trace.Note($"Moe/{op.Op}", $"{node.Describe()}: fc1/fc2 expert weights are not constant 3-D tensors");
            return null;
        }
        string activation = node.GetAttribute("activation_type")?.AsString() ?? "relu";
        bool glu = activation.Contains("glu", StringComparison.OrdinalIgnoreCase);
        bool fused = glu && (fc3 is null || node.GetInt("swiglu_fusion", 0) != 0);
        var (output, shared, sharedGate) = WithSharedExpert(AfterLayout(y), x);
        return new MoeRole
        {
            Form = MoeForm.Fused,
            FusedOp = op,
            Node = node,
            Input = GraphWalk.Upstream(x),
            Output = output,
            Router = router,
            TopK = node.GetInt("k", 0) is > 0 and var k ? (int)k : null,
            NumExperts = (int)fc1.Experts,
            Activation = MoeActivation.OfOp(activation),
            Gate = glu ? fc1 : null,
            Up = glu && !fused ? fc3 : fc1,
            Down = fc2,
            FusedGateUp = fused,
            SharedExpert = shared,
            SharedExpertGate = sharedGate,
        };
    }

    /// <summary>The linear whose output the router probabilities come from (through softmax/sigmoid, bias, casts).</summary>
    private LinearRole? Router(Value probs)
    {
        var v = probs;
        for (int i = 0; i < 8; i++)
        {
            if (linears.ByOutput(v) is { } l) return l;
            if (v.Producer is not { IsDefaultDomain: true } p || !MoeRules.RouterPath.Contains(p.OpType)) return null;
            var next = p.Inputs.FirstOrDefault(input => input is not null && ConstantResolver.Resolve(input) is null);
            if (next is null) return null;
            v = next;
        }
        return null;
    }

    /// <summary>Past CastLike/Cast/Reshape back to the token layout.</summary>
    private static Value AfterLayout(Value v)
    {
        for (int i = 0; i < 6; i++)
        {
            var next = v.Uses.Select(u => u.Node).FirstOrDefault(n => n is not null && (GraphWalk.IsLayoutOp(n) || n.Is("CastLike")) && n.Input(0) == v);
            if (next?.Output(0) is not { } o || v.Uses.Count != 1) return v;
            v = o;
        }
        return v;
    }

    /// <summary>routed + shared(x), or routed + sigmoid(x W) * shared(x): the shared expert is an FFN reading the same tokens.</summary>
    private (Value Output, FfnRole? Shared, LinearRole? Gate) WithSharedExpert(Value routed, Value tokens)
    {
        foreach (var use in routed.Uses)
        {
            if (use.Node is not { } add || !add.Is("Add") || add.Input(1 - use.Index) is not { } other || add.Output(0) is not { } sum) continue;
            LinearRole? gate = null;
            var sharedOut = other;
            if (other.Producer is { } mul && mul.Is("Mul"))
                foreach (int i in new[] { 0, 1 })
                    if (mul.Input(i)?.Producer is { } sig && sig.Is("Sigmoid") && sig.Input(0) is { } logit && linears.ByOutput(logit) is { } g && mul.Input(1 - i) is { } rest)
                        (gate, sharedOut) = (g, rest);
            var shared = ffns.FirstOrDefault(f => GraphWalk.SameTensor(f.Down.Output, sharedOut) && GraphWalk.SameTensor(f.Up.Input, tokens));
            if (shared is null) continue;
            Claimed.Add(shared);
            return (sum, shared, gate);
        }
        return (routed, null, null);
    }

    // ---- decomposed ---------------------------------------------------------------------------------

    private MoeRole? Decomposed(Node topk)
    {
        const string rule = "Moe/Decomposed";
        if (topk.Input(0) is not { } scores || Router(scores) is not { OutFeatures: >= 2 } router) return null;
        var routing = Derived(topk, 24);
        // Experts: FFNs whose down output is scaled by a routing weight.
        var experts = new List<(FfnRole Ffn, Node Scale)>();
        foreach (var f in ffns)
        {
            if (Scaled(f.Down.Output, routing) is { } mul) experts.Add((f, mul));
        }
        if (experts.Count < 2)
        {
            trace.Note(rule, $"{topk.Describe()}: router {router.Weight.Name} [{router.InFeatures}->{router.OutFeatures}] feeds a TopK, but {experts.Count} FFN(s) are scaled by its routing weights (need 2 or more)");
            return null;
        }
        // Their sum: follow the first expert's contribution through the combining ops while the other operand is routed too.
        var v = experts[0].Scale.Output(0)!;
        var tokens = GraphWalk.Upstream(router.Input);
        FfnRole? shared = null;
        LinearRole? sharedGate = null;
        for (int i = 0; i < 64; i++)
        {
            var next = v.Uses.Select(u => u.Node).FirstOrDefault(n => n is { IsDefaultDomain: true } && MoeRules.CombinePath.Contains(n.OpType));
            if (next?.Output(0) is not { } o) break;
            if (next.Is("Add") && next.Inputs.FirstOrDefault(x => x is not null && x != v) is { } other && !routing.Contains(other))
            {
                var (withShared, s, g) = WithSharedExpert(v, tokens);
                if (s is null) break;
                (shared, sharedGate, v) = (s, g, withShared);
                continue;
            }
            v = o;
        }
        foreach (var (f, _) in experts) Claimed.Add(f);
        var first = experts[0].Ffn;
        return new MoeRole
        {
            Form = MoeForm.Decomposed,
            Node = topk,
            Input = tokens,
            Output = v,
            Router = router,
            TopK = topk.Input(1) is { } kv && ConstantResolver.ScalarOf(kv) is double kd ? (int)kd : null,
            NumExperts = (int)router.OutFeatures,
            Activation = MoeActivation.OfExperts(first.Kind, first.Activation),
            Experts = experts.Select(e => e.Ffn).ToList(),
            SharedExpert = shared,
            SharedExpertGate = sharedGate,
        };
    }

    /// <summary>Values computed from the TopK's outputs within <paramref name="depth"/> routing ops.</summary>
    private static HashSet<Value> Derived(Node topk, int depth)
    {
        var set = new HashSet<Value>();
        var queue = new Queue<(Value, int)>();
        foreach (var o in topk.Outputs) if (o is not null) queue.Enqueue((o, 0));
        while (queue.Count > 0)
        {
            var (v, d) = queue.Dequeue();
            if (!set.Add(v) || d >= depth) continue;
            foreach (var use in v.Uses)
                if (use.Node is { IsDefaultDomain: true } n && MoeRules.RoutingPath.Contains(n.OpType))
                    foreach (var o in n.Outputs) if (o is not null) queue.Enqueue((o, d + 1));
        }
        return set;
    }

    /// <summary>The Mul that scales <paramref name="down"/> (through a few layout/gather ops) by a routing weight.</summary>
    private static Node? Scaled(Value down, HashSet<Value> routing)
    {
        var v = down;
        for (int i = 0; i < 4; i++)
        {
            foreach (var use in v.Uses)
                if (use.Node is { } n && n.Is("Mul") && n.Input(1 - use.Index) is { } w && routing.Contains(w)) return n;
            var next = v.Uses.Select(u => u.Node).FirstOrDefault(n => n is not null && (GraphWalk.IsLayoutOp(n) || n.Is("Gather")));
            if (next?.Output(0) is not { } o) return null;
            v = o;
        }
        return null;
    }
}
