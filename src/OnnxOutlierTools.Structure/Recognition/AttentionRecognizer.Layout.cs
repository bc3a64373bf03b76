using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Recognition;

internal sealed partial class AttentionRecognizer
{
    /// <summary>The head size of a Reshape right behind the query projection (Reshape -> Transpose into Q K^T): the linear
    /// index sees through such layout ops, so the path trace never visits them. Needed when the scores are not scaled (T5).</summary>
    private static int? HeadSizeOnLayoutPath(Value? query)
    {
        var v = query;
        for (int i = 0; i < 6 && v?.Producer is { } p && GraphWalk.IsLayoutOp(p); i++)
        {
            if (p.Is("Reshape") && p.Input(1) is { } shape && ConstantResolver.Resolve(shape)?.Tensor is { Dims.Count: 1, ElementCount: 4 } t
                && t.DataType == TensorDataType.Int64 && t.ToInt64Array()[^1] is > 0 and var last)
                return (int)last;
            v = p.Input(0);
        }
        return null;
    }
}
