namespace RetNet.Ilgpu.Kernels.HeadGroups;

/// <summary>Grouped key/value heads in double precision, the reference of <see cref="HeadGroups"/>.</summary>
public static class HeadGroupsReference
{
    /// <summary>[N, H, D] from [N, H/G, D]: query head j reads kv head ⌊j/G⌋.</summary>
    public static double[] Expand(IReadOnlyList<double> source, int rows, int kvHeads, int group, int width)
    {
        var heads = kvHeads * group;
        var result = new double[rows * heads * width];
        for (var n = 0; n < rows; n++)
        for (var j = 0; j < heads; j++)
        for (var d = 0; d < width; d++)
            result[(n * heads + j) * width + d] = source[(n * kvHeads + j / group) * width + d];
        return result;
    }

    /// <summary>[N, H/G, D] from [N, H, D]: the sum over each kv head's G query heads.</summary>
    public static double[] Reduce(IReadOnlyList<double> source, int rows, int kvHeads, int group, int width)
    {
        var result = new double[rows * kvHeads * width];
        for (var n = 0; n < rows; n++)
        for (var j = 0; j < kvHeads * group; j++)
        for (var d = 0; d < width; d++)
            result[(n * kvHeads + j / group) * width + d] += source[(n * kvHeads * group + j) * width + d];
        return result;
    }
}
