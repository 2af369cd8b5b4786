namespace RetNet.Ilgpu.Verification.Cases;

/// <summary>
/// Host-side slicing of [B, T, H, D] arrays (inputs or references) along T: a sequence cut into a prefill and
/// decoding steps, or into segments, and their outputs put back together.
/// </summary>
public static class TokenSlices
{
    /// <summary>Tokens [start, start + count) of a [B, T, H, dim] array, as a [B, count, H, dim] array.</summary>
    public static T[] Slice<T>(T[] x, int batch, int seqLen, int heads, int dim, int start, int count)
    {
        ArgumentNullException.ThrowIfNull(x);
        var rowLength = heads * dim;
        var result = new T[batch * count * rowLength];
        for (var b = 0; b < batch; b++)
            Array.Copy(x, (b * seqLen + start) * rowLength, result, b * count * rowLength, count * rowLength);
        return result;
    }

    /// <summary>Writes a [B, count, H, dim] array into tokens [start, start + count) of a [B, T, H, dim] array.</summary>
    public static void Place<T>(T[] segment, T[] x, int batch, int seqLen, int heads, int dim, int start,
        int count)
    {
        ArgumentNullException.ThrowIfNull(segment);
        ArgumentNullException.ThrowIfNull(x);
        var rowLength = heads * dim;
        for (var b = 0; b < batch; b++)
            Array.Copy(segment, b * count * rowLength, x, (b * seqLen + start) * rowLength, count * rowLength);
    }
}
