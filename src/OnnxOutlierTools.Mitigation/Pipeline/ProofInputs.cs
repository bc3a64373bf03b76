using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Mitigation.Verification;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Pipeline;

/// <summary>Proof cases from calibration windows: each model fed through its own <see cref="FeedPlan"/> (empty caches, GQA
/// lengths, position ids ...), and, when the rewritten model takes the window without a baked prefix, the original's
/// outputs cut to the positions the rewritten model computes.</summary>
public static class ProofInputs
{
    public static IReadOnlyList<ProofCase> Build(string originalPath, string rewrittenPath, IReadOnlyList<int[]> windows, Func<int[], int> dropped, SessionSettings settings)
    {
        FeedPlan originalPlan, rewrittenPlan;
        using (var s = SessionFactory.Open(originalPath, settings)) originalPlan = FeedPlan.Create(originalPath, s.Inputs, s.OutputNames);
        using (var s = SessionFactory.Open(rewrittenPath, settings)) rewrittenPlan = FeedPlan.Create(rewrittenPath, s.Inputs, s.OutputNames);
        var cases = new List<ProofCase>();
        foreach (var window in windows)
        {
            int cut = dropped(window);
            if (cut >= window.Length) continue;
            if (originalPlan.StepMode || rewrittenPlan.StepMode) throw new NotSupportedException("the proof feeds whole windows; a one-token step model is proven by its runner");
            var original = originalPlan.Build(1, window.Length, window, 0, null);
            var rest = window[cut..];
            var rewritten = rewrittenPlan.Build(1, rest.Length, rest, 0, null);
            cases.Add(new ProofCase(original, rewritten, cut == 0 ? null : (_, t) => CutSequence(t, window.Length, cut)));
        }
        return cases;
    }

    /// <summary>The positions from <paramref name="cut"/> on, along the first axis after the batch whose length is the
    /// window's (logits [B, S, V], present keys [B, H, S, D]); a tensor without such an axis is returned as is.</summary>
    public static TensorData CutSequence(TensorData tensor, int sequence, int cut)
    {
        var dims = tensor.Dims;
        int axis = -1;
        for (int i = 1; i < dims.Count; i++) if (dims[i] == sequence) { axis = i; break; }
        if (axis < 0) return tensor;
        long outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= dims[i];
        for (int i = axis + 1; i < dims.Count; i++) inner *= dims[i];
        int size = (int)tensor.ElementType.ByteLength(1);
        var source = tensor.Tensor.Bytes;
        long keep = sequence - cut;
        var bytes = new byte[outer * keep * inner * size];
        for (long o = 0; o < outer; o++)
            source.Slice((int)((o * sequence + cut) * inner * size), (int)(keep * inner * size)).CopyTo(bytes.AsSpan((int)(o * keep * inner * size)));
        var newDims = dims.ToArray();
        newDims[axis] = keep;
        return new TensorData(tensor.Name, new ArrayTensor(tensor.ElementType, newDims, bytes));
    }
}
